#!/usr/bin/env python3
"""Calls ack-gateway from Python using only gRPC server reflection: no .proto files, no codegen.

    pip install grpcio grpcio-reflection protobuf
    python3 examples/python/client.py 127.0.0.1:50051

It lists the services, creates a cluster, reads it back with DescribeClusterDetail, and shows
that an unknown cluster is NOT_FOUND. Exits non-zero if anything is not as expected.
"""
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

CS = "alibabacloud.cs.v20151215.ContainerService"


def main(target):
    channel = grpc.insecure_channel(target)
    reflection = ProtoReflectionDescriptorDatabase(channel)
    services = reflection.get_services()
    print("services:", ", ".join(sorted(services)))
    assert CS in services, services

    pool = descriptor_pool.DescriptorPool(reflection)
    service = pool.FindServiceByName(CS)
    print(f"{CS} has {len(service.methods)} methods")

    def call(method_name, request_json, metadata=()):
        method = service.FindMethodByName(method_name)
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        stub = channel.unary_unary(
            f"/{CS}/{method_name}",
            request_serializer=request_cls.SerializeToString,
            response_deserializer=response_cls.FromString,
        )
        request = json_format.ParseDict(request_json, request_cls())
        return stub(request, metadata=metadata, timeout=10)

    created = call(
        "CreateCluster",
        {"name": "from-python", "region_id": "cn-hangzhou", "cluster_type": "ManagedKubernetes"},
        metadata=(("x-ack-profile", "default"),),
    )
    print("created cluster", created.cluster_id, "task", created.task_id)

    detail = call("DescribeClusterDetail", {"cluster_id": created.cluster_id})
    print("DescribeClusterDetail:", detail.name, detail.region_id, detail.state)
    assert detail.name == "from-python", detail

    try:
        call("DescribeClusterDetail", {"cluster_id": "c-unknown"})
        raise SystemExit("expected NOT_FOUND for an unknown cluster")
    except grpc.RpcError as e:
        print("unknown cluster:", e.code().name)
        assert e.code() == grpc.StatusCode.NOT_FOUND, e.code()
    print("OK")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
