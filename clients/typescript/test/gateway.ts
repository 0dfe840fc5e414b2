// Starts the real gateway binary against its embedded simulator on free loopback ports, for the
// tests. The binary: $ACK_GATEWAY_BIN, else ../../target/debug/ack-gateway (relative to this
// package, i.e. the workspace's debug build).
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), "..");

export function gatewayBinary(): string {
  const fromEnv = process.env.ACK_GATEWAY_BIN;
  const bin = fromEnv ? resolve(fromEnv) : resolve(packageDir, "../../target/debug/ack-gateway");
  if (!existsSync(bin)) {
    throw new Error(
      `ack-gateway binary not found at ${bin} ` +
        (fromEnv ? "(from ACK_GATEWAY_BIN)" : "(the default; set ACK_GATEWAY_BIN)") +
        ": build it with `cargo build` at the repository root, or point ACK_GATEWAY_BIN at one.",
    );
  }
  return bin;
}

async function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.unref();
    server.on("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => ok(port));
    });
  });
}

export interface Gateway {
  /** e.g. http://127.0.0.1:41234 */
  baseUrl: string;
  output(): string;
  stop(): Promise<void>;
}

/** Starts `ack-gateway serve` with the simulator (tasks finishing in 300 ms) and waits for /readyz. */
export async function startGateway(): Promise<Gateway> {
  const bin = gatewayBinary();
  const port = await freePort();
  const adminPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "ack-gateway-ts-"));
  const config = join(dir, "config.toml");
  writeFileSync(
    config,
    [
      "[admin]",
      `listen = "127.0.0.1:${adminPort}"`,
      "[simulator]",
      'task_duration = "300ms"',
      "",
    ].join("\n"),
  );
  // A clean environment: no credentials or gateway settings of the caller's leak in, so the
  // gateway always runs against its simulator with authentication off (loopback only).
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!k.startsWith("ALIBABA_CLOUD_") && !k.startsWith("ACK_GATEWAY_")) env[k] = v;
  }
  env.RUST_LOG = env.RUST_LOG ?? "warn";
  let log = "";
  const child: ChildProcess = spawn(bin, ["serve", "--config", config, "--listen", `127.0.0.1:${port}`], {
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.on("data", (b: Buffer) => (log += b.toString()));
  child.stderr?.on("data", (b: Buffer) => (log += b.toString()));
  const exited = new Promise<void>((ok) => child.once("exit", () => ok()));

  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await stop();
      throw new Error(`ack-gateway exited during start-up (${child.exitCode ?? child.signalCode}):\n${log}`);
    }
    try {
      const res = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`ack-gateway not ready within 30 s:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { baseUrl: `http://127.0.0.1:${port}`, output: () => log, stop };
}
