use super::*;
use std::path::Path;

/// The committed table, with its documentation.
const DOCUMENTED: &str = include_str!("../../../ops/operations.json");

#[test]
fn table_holds_every_operation() {
    let t = builtin();
    assert_eq!(t.operations().filter(|o| o.service == "cs").count(), 148);
    assert!(t.operation("sts", "AssumeRole").is_some());
    assert!(t.operation("ehpc", "AddExistedNodes").is_some());
    let op = t.operation("cs", "DescribeClusterDetail").expect("present");
    assert_eq!(op.method, "GET");
    assert_eq!(op.path, "/clusters/{cluster_id}");
}

#[test]
fn every_path_placeholder_names_a_path_field() {
    for op in builtin().operations() {
        let mut rest = op.path.as_str();
        while let Some(start) = rest.find('{') {
            let end = rest[start..].find('}').expect("closed placeholder") + start;
            let name = &rest[start + 1..end];
            assert!(
                op.fields
                    .iter()
                    .any(|f| f.proto_name() == name && f.location == Some(Location::Path)),
                "{}: placeholder {name} has no path field",
                op.name
            );
            rest = &rest[end + 1..];
        }
    }
}

/// The committed `proto/` files are exactly what the generator renders from the table.
/// Run with `UPDATE_PROTOS=1` to rewrite them after changing the table.
#[test]
fn protos_are_up_to_date() {
    let files = protogen::render(
        &documented(DOCUMENTED)
            .expect("the operation table parses")
            .table,
    )
    .expect("render");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let update = std::env::var_os("UPDATE_PROTOS").is_some();
    let mut stale = Vec::new();
    for (rel, text) in &files {
        let path = root.join(rel);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if &committed != text {
            if update {
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(&path, text).expect("write proto");
            } else {
                stale.push(rel.clone());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated protos differ from the committed ones: {stale:?}; run UPDATE_PROTOS=1 cargo test -p ack-table protos_are_up_to_date"
    );
}

/// The run-time table is the documented one without its documentation: nothing else differs.
#[test]
fn the_runtime_table_differs_from_the_documented_one_only_in_documentation() {
    fn undocumented(fields: &mut [model::Field]) {
        for f in fields {
            f.description = None;
            if let Some(nested) = &mut f.fields {
                undocumented(nested);
            }
            for inner in [&mut f.items, &mut f.values].into_iter().flatten() {
                undocumented(std::slice::from_mut(inner.as_mut()));
            }
        }
    }
    let runtime = builtin();
    let mut documented = documented(DOCUMENTED).expect("the operation table parses");
    assert!(documented.operations().any(|op| op.summary.is_some()));
    for op in &mut documented.table.operations {
        op.summary = None;
        undocumented(&mut op.fields);
        if let Some(fields) = &mut op.response.fields {
            undocumented(fields);
        }
        for inner in [&mut op.response.items, &mut op.response.values]
            .into_iter()
            .flatten()
        {
            undocumented(std::slice::from_mut(inner.as_mut()));
        }
    }
    assert_eq!(
        format!("{:?}", runtime.table),
        format!("{:?}", documented.table)
    );
}

/// A dotted path (`a.b`) names nested message fields of `fields`.
fn has_path(fields: &[Field], path: &str) -> bool {
    let mut fields = fields;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        let Some(f) = fields.iter().find(|f| f.proto_name() == part) else {
            return false;
        };
        if parts.peek().is_some() {
            match f.fields.as_deref() {
                Some(inner) => fields = inner,
                None => return false,
            }
        }
    }
    true
}

/// Every write-safety column names what exists: the client token is a request field of a write,
/// and an outcome check's read is a read of the same service whose request, condition and
/// answer fields exist where they are looked up.
#[test]
fn write_safety_columns_name_existing_fields() {
    let t = builtin();
    let mut checks = 0;
    for op in t.operations() {
        if let Some(token) = &op.policy.client_token {
            assert!(!op.policy.read, "{}: a read with a client token", op.name);
            assert!(has_path(&op.fields, token), "{}: no field {token}", op.name);
        }
        let Some(check) = &op.policy.outcome_check else {
            continue;
        };
        checks += 1;
        assert!(!op.policy.read, "{}: a read with an outcome check", op.name);
        let read = t
            .operation(&op.service, &check.read)
            .unwrap_or_else(|| panic!("{}: no read {}", op.name, check.read));
        assert!(read.policy.read, "{}: {} is not a read", op.name, read.name);
        for (read_field, write_field) in &check.request {
            assert!(
                has_path(&read.fields, read_field),
                "{}: {read_field}",
                op.name
            );
            assert!(
                has_path(&op.fields, write_field),
                "{}: {write_field}",
                op.name
            );
        }
        let answer = read.response.fields.as_deref().unwrap_or_default();
        let item_fields = match &check.items {
            Some(items) => {
                let list = answer
                    .iter()
                    .find(|f| f.proto_name() == items)
                    .unwrap_or_else(|| panic!("{}: no list {items}", op.name));
                list.items
                    .as_ref()
                    .and_then(|i| i.fields.as_deref())
                    .unwrap_or_default()
            }
            None => answer,
        };
        assert!(
            has_path(item_fields, &check.field),
            "{}: {}",
            op.name,
            check.field
        );
        assert!(
            check.equals.is_some() == check.any_of.is_empty(),
            "{}: exactly one of equals and any_of",
            op.name
        );
        if let Some(equals) = &check.equals {
            assert!(has_path(&op.fields, equals), "{}: {equals}", op.name);
        }
        let written = op.response.fields.as_deref().unwrap_or_default();
        for (to, from) in &check.answer {
            assert!(has_path(written, to), "{}: answer field {to}", op.name);
            assert!(
                has_path(item_fields, from),
                "{}: answer path {from}",
                op.name
            );
        }
    }
    assert_eq!(checks, 3);
}
