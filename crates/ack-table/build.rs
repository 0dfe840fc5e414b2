//! The table the gateway loads at run time: `ops/operations.json` without its documentation
//! (operation summaries and field descriptions, about two thirds of the file), which only the
//! generated protos carry. Those two keys never name anything else in the table's schema.

use std::path::PathBuf;

fn main() {
    let table = "../../ops/operations.json";
    println!("cargo:rerun-if-changed={table}");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let text = std::fs::read_to_string(table).expect("read ops/operations.json");
    let mut value: serde_json::Value =
        serde_json::from_str(&text).expect("parse ops/operations.json");
    strip(&mut value);
    std::fs::write(
        out.join("operations_runtime.json"),
        serde_json::to_string(&value).expect("serialise the runtime table"),
    )
    .expect("write the runtime table");
}

fn strip(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.remove("description");
            map.remove("summary");
            map.values_mut().for_each(strip);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}
