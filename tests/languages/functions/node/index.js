// A Lambda handler in Node.js, for the bridge's runtime target tests: run under AWS's
// aws-lambda-ric (npm) or under minimal-runtime.js, the Runtime API protocol by hand.
//
// It records each call as a JSON line in $CALLS_OUT (when set) and answers with what shows
// it ran here: the language, the event's key and Lambda's context. A key containing "fail"
// is a function error (errorType "LanguageError").
"use strict";

const fs = require("node:fs");

class LanguageError extends Error {
  constructor(message) {
    super(message);
    this.name = "LanguageError"; // what the runtime reports as errorType
  }
}

function eventKey(event) {
  if (typeof event.rawPath === "string") {
    return [event.rawPath, true];
  }
  const record = (event.Records || [])[0];
  return [record?.s3?.object?.key ?? "", false];
}

exports.handler = async (event, context) => {
  const [key, http] = eventKey(event);
  const info = {
    language: "node",
    runtime: process.version,
    client: process.env.NODE_RUNTIME_CLIENT || "aws-lambda-ric",
    key,
    functionName: context.functionName,
    memoryLimitInMB: Number(context.memoryLimitInMB),
    invokedFunctionArn: context.invokedFunctionArn,
    awsRequestId: context.awsRequestId,
    remainingMs: context.getRemainingTimeInMillis(),
  };
  if (process.env.CALLS_OUT) {
    fs.appendFileSync(process.env.CALLS_OUT, JSON.stringify(info) + "\n");
  }
  if (key.includes("fail")) {
    throw new LanguageError(`node failed on ${key}`);
  }
  if (!http) {
    return info;
  }
  return {
    statusCode: 200,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(info),
  };
};
