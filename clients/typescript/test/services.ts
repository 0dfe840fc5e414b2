// The one place the tests name the gateway's own services and generated enums (protoc-gen-es
// drops the WATCH_EVENT_KIND_ prefix of WatchEventKind, so its members are INITIAL, FINAL, ...).
// After renaming a service and regenerating src/gen, update this file only.
import {
  ContainerService,
  ExplainService,
  WatchService,
  WatchEventKind,
  ErrorInfoSchema,
} from "@ack-gateway/client";

export { ContainerService, ErrorInfoSchema };

/** ackgateway.v1.WatchService. */
export const WatchSvc = WatchService;
/** ackgateway.v1.ExplainService. */
export const ExplainSvc = ExplainService;

/** The kinds of a watch stream's messages. */
export const WatchKind = {
  initial: WatchEventKind.INITIAL,
  change: WatchEventKind.CHANGE,
  heartbeat: WatchEventKind.HEARTBEAT,
  pollError: WatchEventKind.POLL_ERROR,
  final: WatchEventKind.FINAL,
} as const;
