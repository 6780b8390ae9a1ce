/**
 * Type bytes of the backend (server -> client) messages the proxy looks at
 * after authentication (PostgreSQL's protocol, "Message Formats"): one table
 * for the relay, the statement tracker and the upstream pool, as
 * FrontendType is for the client's messages.
 */
export const BackendType = {
  ParseComplete: 0x31 /* 1 */,
  BindComplete: 0x32 /* 2 */,
  CloseComplete: 0x33 /* 3 */,
  NotificationResponse: 0x41 /* A */,
  CommandComplete: 0x43 /* C */,
  DataRow: 0x44 /* D */,
  ErrorResponse: 0x45 /* E */,
  EmptyQueryResponse: 0x49 /* I */,
  NoticeResponse: 0x4e /* N */,
  ParameterStatus: 0x53 /* S */,
  RowDescription: 0x54 /* T */,
  FunctionCallResponse: 0x56 /* V */,
  ReadyForQuery: 0x5a /* Z */,
  CopyData: 0x64 /* d */,
  NoData: 0x6e /* n */,
  PortalSuspended: 0x73 /* s */,
  ParameterDescription: 0x74 /* t */,
} as const
