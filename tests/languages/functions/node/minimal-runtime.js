// A minimal AWS Lambda Runtime API client in plain Node.js (no dependencies), written from
// AWS's published protocol ("Using the Lambda runtime API for custom runtimes"):
//
//   GET  /2018-06-01/runtime/invocation/next            long poll: the event, with
//        Lambda-Runtime-Aws-Request-Id, -Deadline-Ms, -Invoked-Function-Arn, -Trace-Id
//   POST /2018-06-01/runtime/invocation/{id}/response   the handler's answer
//   POST /2018-06-01/runtime/invocation/{id}/error      {errorType, errorMessage, stackTrace}
//   POST /2018-06-01/runtime/init/error                 the same, when the handler cannot load
//
// with Lambda-Runtime-Function-Error-Type on both error posts.
//
// Usage: AWS_LAMBDA_RUNTIME_API=host:port node minimal-runtime.js file.export
// (or the handler in _HANDLER); the file is found in LAMBDA_TASK_ROOT, else the current folder.
"use strict";

const http = require("node:http");
const path = require("node:path");

const API = process.env.AWS_LAMBDA_RUNTIME_API;
const PREFIX = "/2018-06-01/runtime";
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function request(method, route, body, headers = {}) {
  // The address may carry a path (host:port/key): keep it in front of the route.
  const slash = API.indexOf("/");
  const hostPort = slash < 0 ? API : API.slice(0, slash);
  const base = slash < 0 ? "" : API.slice(slash);
  const colon = hostPort.lastIndexOf(":");
  const options = {
    method,
    agent,
    host: hostPort.slice(0, colon).replace(/^\[|\]$/g, ""),
    port: Number(hostPort.slice(colon + 1)),
    path: base + PREFIX + route,
    headers: { ...headers, ...(body === undefined ? {} : { "Content-Length": Buffer.byteLength(body) }) },
  };
  return new Promise((resolve, reject) => {
    const req = http.request(options, (res) => {
      const chunks = [];
      res.on("data", (chunk) => chunks.push(chunk));
      res.on("end", () =>
        resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

function errorDocument(error) {
  const err = error instanceof Error ? error : new Error(String(error));
  return {
    errorType: err.name || "Error",
    errorMessage: err.message,
    stackTrace: String(err.stack || "").split("\n").slice(1).map((line) => line.trim()),
  };
}

async function postError(route, error, errorType) {
  const document = errorDocument(error);
  if (errorType) document.errorType = errorType;
  const headers = {
    "Content-Type": "application/json",
    "Lambda-Runtime-Function-Error-Type": document.errorType,
  };
  await request("POST", route, JSON.stringify(document), headers);
  console.error(JSON.stringify(document));
}

function loadHandler(name) {
  const dot = name.lastIndexOf(".");
  const file = path.resolve(process.env.LAMBDA_TASK_ROOT || ".", name.slice(0, dot));
  let module;
  try {
    module = require(file);
  } catch (error) {
    error.lambdaType = "Runtime.ImportModuleError";
    throw error;
  }
  const handler = module[name.slice(dot + 1)];
  if (typeof handler !== "function") {
    const error = new Error(`${name} is undefined or not exported`);
    error.lambdaType = "Runtime.HandlerNotFound";
    throw error;
  }
  return handler;
}

function invokeHandler(handler, event, context) {
  if (handler.length >= 3) {
    // callback style: (event, context, callback)
    return new Promise((resolve, reject) => {
      handler(event, context, (error, result) => (error ? reject(error) : resolve(result)));
    });
  }
  return Promise.resolve().then(() => handler(event, context));
}

async function main() {
  let handler;
  try {
    handler = loadHandler(process.argv[2] || process.env._HANDLER);
  } catch (error) {
    await postError("/init/error", error, error.lambdaType);
    process.exit(1);
  }
  for (;;) {
    const next = await request("GET", "/invocation/next");
    const id = next.headers["lambda-runtime-aws-request-id"];
    const deadline = Number(next.headers["lambda-runtime-deadline-ms"]);
    if (next.headers["lambda-runtime-trace-id"]) {
      process.env._X_AMZN_TRACE_ID = next.headers["lambda-runtime-trace-id"];
    }
    const context = {
      awsRequestId: id,
      invokedFunctionArn: next.headers["lambda-runtime-invoked-function-arn"],
      functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
      functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
      memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
      callbackWaitsForEmptyEventLoop: true,
      getRemainingTimeInMillis: () => deadline - Date.now(),
    };
    try {
      const event = JSON.parse(next.body.toString("utf8"));
      const result = await invokeHandler(handler, event, context);
      const body = JSON.stringify(result === undefined ? null : result);
      await request("POST", `/invocation/${id}/response`, body, {
        "Content-Type": "application/json",
      });
    } catch (error) {
      await postError(`/invocation/${id}/error`, error);
    }
  }
}

main().catch((error) => {
  console.error("runtime failed:", error);
  process.exit(1);
});
