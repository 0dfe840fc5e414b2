// End-to-end tests of the generated client against the real gateway binary (embedded simulator):
// the same calls over the Connect protocol and over gRPC-Web, both through @connectrpc/connect-node
// on HTTP/1.1. Service names come from ./services.ts only.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, request as httpRequest } from "node:http";
import type { AddressInfo } from "node:net";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { ContainerService, ErrorInfoSchema, ExplainSvc, WatchKind, WatchSvc } from "./services.js";
import { startGateway, type Gateway } from "./gateway.js";

let gateway: Gateway;

before(async () => {
  gateway = await startGateway();
});

after(async () => {
  await gateway?.stop();
});

const transports: Record<string, (baseUrl: string) => Transport> = {
  "Connect protocol": (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" }),
  "gRPC-Web": (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }),
};

for (const [name, makeTransport] of Object.entries(transports)) {
  describe(name, () => {
    let created: { clusterId: string; taskId: string } | undefined;
    const cs = () => createClient(ContainerService, makeTransport(gateway.baseUrl));
    const watch = () => createClient(WatchSvc, makeTransport(gateway.baseUrl));

    test("write: CreateCluster returns a cluster id and a task id", async () => {
      const res = await cs().createCluster({
        name: `ts-client-${name.replace(/\W+/g, "-").toLowerCase()}`,
        regionId: "cn-hangzhou",
        clusterType: "ManagedKubernetes",
      });
      assert.match(res.clusterId ?? "", /^c[0-9a-f]+/);
      assert.match(res.taskId ?? "", /^T-/);
      assert.ok(res.requestId, "request id");
      created = { clusterId: res.clusterId!, taskId: res.taskId! };
    });

    test("unary read: DescribeClustersV1 lists it, DescribeClusterDetail reads it", async () => {
      assert.ok(created, "CreateCluster ran first");
      let headers: Headers | undefined;
      const list = await cs().describeClustersV1(
        { regionId: "cn-hangzhou", pageSize: 100n },
        { onHeader: (h) => (headers = h) },
      );
      assert.ok(
        list.clusters.some((c) => c.clusterId === created!.clusterId),
        `cluster ${created.clusterId} in ${JSON.stringify(list.clusters.map((c) => c.clusterId))}`,
      );
      assert.ok(headers?.get("x-acs-request-id"), "x-acs-request-id response header");
      const detail = await cs().describeClusterDetail({ clusterId: created.clusterId });
      assert.equal(detail.clusterId, created.clusterId);
      assert.equal(detail.clusterType, "ManagedKubernetes");
      assert.equal(detail.regionId, "cn-hangzhou");
    });

    test("server stream: WatchTask follows the CreateCluster task to its end", async () => {
      assert.ok(created, "CreateCluster ran first");
      const kinds: number[] = [];
      let last: { phase?: number; targetId?: string } | undefined;
      for await (const event of watch().watchTask({ taskId: created.taskId }, { timeoutMs: 30_000 })) {
        kinds.push(event.kind);
        last = { phase: event.status?.phase, targetId: event.status?.targetId };
      }
      // The loop ended without throwing: the stream finished with status OK.
      assert.equal(kinds[0], WatchKind.initial, `first message INITIAL, got kinds ${kinds}`);
      assert.equal(kinds.at(-1), WatchKind.final, `last message FINAL, got kinds ${kinds}`);
      assert.equal(last?.targetId, created.taskId);
      assert.equal(last?.phase, 4 /* PHASE_SUCCEEDED */, "task succeeded");
    });

    test("error: a missing cluster is NOT_FOUND with google.rpc.ErrorInfo", async () => {
      const err = await cs()
        .describeClusterDetail({ clusterId: "c-does-not-exist-0000" })
        .then(() => undefined, (e: unknown) => ConnectError.from(e));
      assert.ok(err, "the call failed");
      assert.equal(err.code, Code.NotFound, `code ${Code[err.code]}: ${err.message}`);
      const infos = err.findDetails(ErrorInfoSchema);
      assert.equal(infos.length, 1, `one ErrorInfo in ${JSON.stringify(err.details)}`);
      assert.equal(infos[0].reason, "ErrorClusterNotFound");
      assert.equal(infos[0].metadata["http_status"], "404");
      assert.ok(infos[0].metadata["request_id"], "ErrorInfo.metadata.request_id");
      assert.ok(infos[0].domain, "ErrorInfo.domain");
    });

    test("ExplainCall answers the signed request it would send", async () => {
      const explain = createClient(ExplainSvc, makeTransport(gateway.baseUrl));
      const res = await explain.explainCall({
        operation: "DescribeClusterDetail",
        request: { cluster_id: "c-explained" },
      });
      assert.equal(res.operation, "DescribeClusterDetail");
      assert.equal(res.method, "GET");
      assert.match(res.url, /c-explained/);
    });
  });
}

describe("Connect protocol GET", () => {
  test("a NO_SIDE_EFFECTS read is sent as GET with useHttpGet", async () => {
    // A recording pass-through proxy: the transport decides GET vs POST after the interceptors
    // run, so the method is observed on the wire.
    const seen: string[] = [];
    const target = new URL(gateway.baseUrl);
    const proxy = createServer((req, res) => {
      seen.push(`${req.method} ${req.url?.split("?")[0]}`);
      const upstream = httpRequest(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (up) => {
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        },
      );
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    });
    await new Promise<void>((ok) => proxy.listen(0, "127.0.0.1", ok));
    try {
      const { port } = proxy.address() as AddressInfo;
      const transport = createConnectTransport({
        baseUrl: `http://127.0.0.1:${port}`,
        httpVersion: "1.1",
        useHttpGet: true,
      });
      const err = await createClient(ContainerService, transport)
        .describeClusterDetail({ clusterId: "c-does-not-exist-0001" })
        .then(() => undefined, (e: unknown) => ConnectError.from(e));
      assert.deepEqual(seen, ["GET /alibabacloud.cs.v20151215.ContainerService/DescribeClusterDetail"]);
      assert.equal(err?.code, Code.NotFound, err?.message);
      assert.equal(err?.findDetails(ErrorInfoSchema)[0]?.reason, "ErrorClusterNotFound");
    } finally {
      proxy.closeAllConnections();
      await new Promise((ok) => proxy.close(ok));
    }
  });
});
