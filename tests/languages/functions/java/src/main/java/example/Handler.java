package example;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A Lambda handler in Java under AWS's runtime interface client, for the bridge's runtime
 * target tests. It records each call as a JSON line in $CALLS_OUT (when set) and answers
 * with what shows it ran here: the language, the event's key and Lambda's context. A key
 * containing "fail" is a function error (errorType "example.Handler$LanguageError").
 */
public class Handler implements RequestHandler<Map<String, Object>, Object> {

  /** The function error: the runtime reports its class name as errorType. */
  public static class LanguageError extends RuntimeException {
    public LanguageError(String message) {
      super(message);
    }
  }

  @Override
  public Object handleRequest(Map<String, Object> event, Context context) {
    boolean http = event.get("rawPath") instanceof String;
    String key = http ? (String) event.get("rawPath") : s3Key(event);
    Map<String, Object> info = new LinkedHashMap<>();
    info.put("language", "java");
    info.put("runtime", System.getProperty("java.version"));
    info.put("key", key);
    info.put("functionName", context.getFunctionName());
    info.put("memoryLimitInMB", context.getMemoryLimitInMB());
    info.put("invokedFunctionArn", context.getInvokedFunctionArn());
    info.put("awsRequestId", context.getAwsRequestId());
    info.put("remainingMs", context.getRemainingTimeInMillis());
    record(info);
    if (key.contains("fail")) {
      throw new LanguageError("java failed on " + key);
    }
    if (!http) {
      return info;
    }
    Map<String, Object> answer = new LinkedHashMap<>();
    answer.put("statusCode", 200);
    answer.put("headers", Map.of("content-type", "application/json"));
    answer.put("body", json(info));
    return answer;
  }

  private static String s3Key(Map<String, Object> event) {
    if (event.get("Records") instanceof List<?> records && !records.isEmpty()
        && records.get(0) instanceof Map<?, ?> record
        && record.get("s3") instanceof Map<?, ?> s3
        && s3.get("object") instanceof Map<?, ?> object
        && object.get("key") instanceof String key) {
      return key;
    }
    return "";
  }

  private static void record(Map<String, Object> info) {
    String out = System.getenv("CALLS_OUT");
    if (out == null || out.isEmpty()) {
      return;
    }
    try {
      Files.writeString(Path.of(out), json(info) + "\n", StandardCharsets.UTF_8,
          StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
  }

  /** A flat map of strings and numbers as JSON (no library needed for so little). */
  private static String json(Map<String, Object> map) {
    StringBuilder out = new StringBuilder("{");
    for (Map.Entry<String, Object> entry : map.entrySet()) {
      if (out.length() > 1) {
        out.append(',');
      }
      out.append(quote(entry.getKey())).append(':');
      Object value = entry.getValue();
      out.append(value instanceof Number ? value.toString() : quote(String.valueOf(value)));
    }
    return out.append('}').toString();
  }

  private static String quote(String text) {
    StringBuilder out = new StringBuilder("\"");
    for (char c : text.toCharArray()) {
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        default -> {
          if (c < 0x20) {
            out.append(String.format("\\u%04x", (int) c));
          } else {
            out.append(c);
          }
        }
      }
    }
    return out.append('"').toString();
  }
}
