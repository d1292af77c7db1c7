// A Lambda handler in Go under aws-lambda-go, for the bridge's runtime target tests.
//
// It records each call as a JSON line in $CALLS_OUT (when set) and answers with what shows
// it ran here: the language, the event's key and Lambda's context. A key containing
// "fail" is a function error (errorType "languageError").
package main

import (
	"context"
	"encoding/json"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// languageError is the function error: aws-lambda-go reports its type name as errorType.
type languageError struct{ key string }

func (e languageError) Error() string { return "go failed on " + e.key }

// eventKey is the S3 object key of a notification, or the path of an HTTP API request.
func eventKey(event map[string]any) (string, bool) {
	if path, ok := event["rawPath"].(string); ok {
		return path, true
	}
	if records, ok := event["Records"].([]any); ok && len(records) > 0 {
		record, _ := records[0].(map[string]any)
		s3, _ := record["s3"].(map[string]any)
		object, _ := s3["object"].(map[string]any)
		key, _ := object["key"].(string)
		return key, false
	}
	return "", false
}

func record(line map[string]any) error {
	out := os.Getenv("CALLS_OUT")
	if out == "" {
		return nil
	}
	data, err := json.Marshal(line)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(data, '\n'))
	return err
}

func handle(ctx context.Context, event map[string]any) (any, error) {
	key, http := eventKey(event)
	lc, _ := lambdacontext.FromContext(ctx)
	deadline, _ := ctx.Deadline()
	info := map[string]any{
		"language":           "go",
		"runtime":            runtime.Version(),
		"key":                key,
		"functionName":       lambdacontext.FunctionName,
		"memoryLimitInMB":    lambdacontext.MemoryLimitInMB,
		"invokedFunctionArn": lc.InvokedFunctionArn,
		"awsRequestId":       lc.AwsRequestID,
		"remainingMs":        time.Until(deadline).Milliseconds(),
	}
	if err := record(info); err != nil {
		return nil, err
	}
	if strings.Contains(key, "fail") {
		return nil, languageError{key}
	}
	if !http {
		return info, nil
	}
	body, err := json.Marshal(info)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"statusCode": 200,
		"headers":    map[string]string{"content-type": "application/json"},
		"body":       string(body),
	}, nil
}

func main() {
	lambda.Start(handle)
}
