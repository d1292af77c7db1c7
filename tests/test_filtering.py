"""Tests for bridge.filtering: Lambda FilterCriteria semantics and pattern validation."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bridge.filtering import (
    MAX_FILTERS,
    MAX_PATTERN_LENGTH,
    FilterPatternError,
    FilterSet,
    Pattern,
    compile_pattern,
)

# --- records shaped like the AWS documentation examples --------------------------------

# with-sqs-filtering: the body is JSON, already decoded by the connector.
SQS_RECORD: dict[str, Any] = {
    "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
    "body": {"RecordNumber": 1234, "TimeStamp": "yyyy-mm-ddThh:mm:ss", "RequestCode": "AAAA"},
    "attributes": {"ApproximateReceiveCount": "1"},
    "messageAttributes": {},
    "eventSource": "aws:sqs",
}

# with-ddb-filtering: typed attribute values; numbers are strings under "N".
DDB_RECORD: dict[str, Any] = {
    "eventID": "1",
    "eventName": "INSERT",
    "dynamodb": {
        "Keys": {"CustomerName": {"S": "AnyCompany Industries"}},
        "NewImage": {
            "AccountManager": {"S": "Pat Candella"},
            "PaymentTerms": {"S": "60 days"},
            "CustomerName": {"S": "AnyCompany Industries"},
            "status": {"S": "active"},
            "Quantity": {"N": "101"},
            "Active": {"BOOL": True},
        },
        "SequenceNumber": "111",
        "SizeBytes": 26,
        "StreamViewType": "NEW_IMAGE",
    },
}

# kafka-filtering: the value is JSON, already decoded by the connector.
KAFKA_RECORD: dict[str, Any] = {
    "topic": "mytopic",
    "partition": 0,
    "offset": 15,
    "timestamp": 1545084650987,
    "value": {"device_ID": "AB1234", "session": {"start_time": "t", "duration": 162}},
    "headers": [],
}

EMPLOYEES: dict[str, Any] = {
    "employees": [
        {"firstName": "John", "lastName": "Doe"},
        {"firstName": "Anna", "lastName": "Smith"},
        {"firstName": "Peter", "lastName": "Jones"},
    ]
}

_ = pytest.param

# (pattern, record, expected)
MATCH_CASES = [
    # --- AWS documentation examples ---------------------------------------------------
    _({"body": {"RequestCode": ["BBBB"]}}, SQS_RECORD, False, id="sqs-doc-body-other-code"),
    _({"body": {"RequestCode": ["AAAA"]}}, SQS_RECORD, True, id="sqs-doc-body-code"),
    _({"body": {"RecordNumber": [{"numeric": [">", 1000]}]}}, SQS_RECORD, True, id="sqs-numeric"),
    _({"body": {"Missing": ["AAAA"]}}, SQS_RECORD, False, id="sqs-body-missing-key"),
    _(
        {"dynamodb": {"Keys": {"CustomerName": {"S": ["AnyCompany Industries"]}}}},
        DDB_RECORD,
        True,
        id="ddb-doc-table-key",
    ),
    _(
        {"dynamodb": {"NewImage": {"status": {"S": ["active"]}}}},
        DDB_RECORD,
        True,
        id="ddb-newimage-typed-attribute",
    ),
    _(
        {"dynamodb": {"NewImage": {"status": {"S": ["inactive"]}}}},
        DDB_RECORD,
        False,
        id="ddb-newimage-other-value",
    ),
    _(
        {
            "dynamodb": {
                "NewImage": {
                    "AccountManager": {"S": ["Pat Candella"]},
                    "PaymentTerms": {"S": ["60 days"]},
                }
            }
        },
        DDB_RECORD,
        True,
        id="ddb-doc-and-of-attributes",
    ),
    _(
        {
            "dynamodb": {
                "NewImage": {
                    "AccountManager": {"S": ["Pat Candella"]},
                    "PaymentTerms": {"S": ["30 days"]},
                }
            }
        },
        DDB_RECORD,
        False,
        id="ddb-and-one-attribute-differs",
    ),
    _(
        {"dynamodb": {"NewImage": {"AccountManager": {"S": [{"exists": True}]}}}},
        DDB_RECORD,
        True,
        id="ddb-doc-exists-on-typed-leaf",
    ),
    _(
        {"dynamodb": {"NewImage": {"AccountManager": [{"exists": True}]}}},
        DDB_RECORD,
        False,
        id="ddb-exists-on-attribute-object-is-not-a-leaf",
    ),
    _(
        {"dynamodb": {"NewImage": {"Discount": {"S": [{"exists": False}]}}}},
        DDB_RECORD,
        True,
        id="ddb-attribute-absent",
    ),
    _(
        {"dynamodb": {"NewImage": {"Quantity": {"N": ["101"]}}}},
        DDB_RECORD,
        True,
        id="ddb-N-matches-as-string",
    ),
    _(
        {"dynamodb": {"NewImage": {"Quantity": {"N": [{"numeric": [">", 100]}]}}}},
        DDB_RECORD,
        False,
        id="ddb-N-string-is-not-a-number",
    ),
    _(
        {"dynamodb": {"NewImage": {"Active": {"BOOL": [True]}}}},
        DDB_RECORD,
        True,
        id="ddb-BOOL-true",
    ),
    _({"eventName": ["INSERT", "MODIFY"]}, DDB_RECORD, True, id="ddb-metadata-or-values"),
    _({"value": {"device_ID": [{"prefix": "AB"}]}}, KAFKA_RECORD, True, id="kafka-doc-prefix"),
    _({"value": {"device_ID": [{"prefix": "CD"}]}}, KAFKA_RECORD, False, id="kafka-prefix-miss"),
    _(
        {"value": {"session": {"duration": [{"numeric": [">", 100, "<=", 200]}]}}},
        KAFKA_RECORD,
        True,
        id="kafka-nested-numeric",
    ),
    # --- equals ---------------------------------------------------------------------------
    _({"Name": ["Alice"]}, {"Name": "Alice"}, True, id="equals-string"),
    _({"Name": ["Alice"]}, {"Name": "alice"}, False, id="equals-is-case-sensitive"),
    _({"Name": ["Alice"]}, {"Name": "Alice "}, False, id="equals-no-normalization"),
    _({"Name": ["Alice"]}, {"Other": "Alice"}, False, id="equals-missing-key"),
    _({"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Debit"}, True, id="equals-or-values"),
    _({"PaymentType": ["Credit", "Debit"]}, {"PaymentType": "Cash"}, False, id="equals-or-miss"),
    _({"Price": [100]}, {"Price": 100}, True, id="equals-int"),
    _({"Price": [100]}, {"Price": 100.0}, True, id="equals-int-pattern-float-value"),
    _({"Price": [100.0]}, {"Price": 100}, True, id="equals-float-pattern-int-value"),
    _({"Price": [2.5]}, {"Price": 2.5}, True, id="equals-float"),
    _({"Price": [100]}, {"Price": 101}, False, id="equals-number-differs"),
    _({"Price": [100]}, {"Price": "100"}, False, id="equals-number-vs-string"),
    _({"Price": ["100"]}, {"Price": 100}, False, id="equals-string-vs-number"),
    _({"Big": [12345678901234567890]}, {"Big": 12345678901234567890}, True, id="equals-big-int"),
    _({"Big": [12345678901234567890]}, {"Big": 12345678901234567891}, False, id="big-int-off"),
    _({"On": [True]}, {"On": True}, True, id="equals-true"),
    _({"On": [False]}, {"On": False}, True, id="equals-false"),
    _({"On": [True]}, {"On": False}, False, id="equals-true-vs-false"),
    _({"On": [True]}, {"On": 1}, False, id="bool-pattern-vs-number-1"),
    _({"On": [False]}, {"On": 0}, False, id="bool-pattern-vs-number-0"),
    _({"On": [1]}, {"On": True}, False, id="number-pattern-vs-true"),
    _({"On": [0]}, {"On": False}, False, id="number-pattern-vs-false"),
    _({"On": [1.0]}, {"On": True}, False, id="float-pattern-vs-true"),
    _({"On": [True]}, {"On": "true"}, False, id="bool-pattern-vs-string"),
    _({"On": [False]}, {"On": None}, False, id="false-vs-null"),
    _(
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York", "Day": "Monday"},
        True,
        id="and-both",
    ),
    _(
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York", "Day": "Tuesday"},
        False,
        id="and-one-fails",
    ),
    _(
        {"Location": ["New York"], "Day": ["Monday"]},
        {"Location": "New York"},
        False,
        id="and-one-missing",
    ),
    # --- null / empty / missing -------------------------------------------------------
    _({"UserID": [None]}, {"UserID": None}, True, id="null-matches-null"),
    _({"UserID": [None]}, {}, False, id="null-vs-missing"),
    _({"UserID": [None]}, {"UserID": ""}, False, id="null-vs-empty-string"),
    _({"UserID": [None]}, {"UserID": "null"}, False, id="null-vs-string-null"),
    _({"LastName": [""]}, {"LastName": ""}, True, id="empty-matches-empty"),
    _({"LastName": [""]}, {"LastName": None}, False, id="empty-vs-null"),
    _({"LastName": [""]}, {}, False, id="empty-vs-missing"),
    _({"LastName": [""]}, {"LastName": " "}, False, id="empty-vs-space"),
    _({"x": [None, ""]}, {"x": ""}, True, id="null-or-empty"),
    # --- equals-ignore-case -------------------------------------------------------------
    _({"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "ALICE"}, True, id="ignore-case"),
    _({"Name": [{"equals-ignore-case": "ALICE"}]}, {"Name": "aLiCe"}, True, id="ignore-case-mix"),
    _({"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "alicia"}, False, id="ic-other"),
    _({"Name": [{"equals-ignore-case": "alice"}]}, {"Name": "alice!"}, False, id="ic-longer"),
    _({"Name": [{"equals-ignore-case": "5"}]}, {"Name": 5}, False, id="ic-number-value"),
    _({"Name": [{"equals-ignore-case": "alice"}]}, {}, False, id="ic-missing"),
    # --- anything-but ---------------------------------------------------------------------
    _({"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Sunny"}, True, id="ab-other"),
    _({"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "Raining"}, False, id="ab-same"),
    _({"Weather": [{"anything-but": ["Raining"]}]}, {}, False, id="ab-missing-key"),
    _({"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": None}, True, id="ab-null"),
    _({"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": ""}, True, id="ab-empty"),
    _({"Weather": [{"anything-but": ["Raining"]}]}, {"Weather": "raining"}, True, id="ab-case"),
    _(
        {"state": [{"anything-but": ["stopped", "overloaded"]}]},
        {"state": "overloaded"},
        False,
        id="ab-list-second",
    ),
    _({"state": [{"anything-but": "initializing"}]}, {"state": "running"}, True, id="ab-single"),
    _(
        {"state": [{"anything-but": "initializing"}]},
        {"state": "initializing"},
        False,
        id="ab-single-same",
    ),
    _({"x": [{"anything-but": [100, 200, 300]}]}, {"x": 150}, True, id="ab-numbers-other"),
    _({"x": [{"anything-but": [100, 200, 300]}]}, {"x": 200}, False, id="ab-numbers-same"),
    _({"x": [{"anything-but": [100, 200, 300]}]}, {"x": 200.0}, False, id="ab-numbers-float"),
    _({"x": [{"anything-but": [100, 200, 300]}]}, {"x": "200"}, True, id="ab-numbers-vs-str"),
    _({"x": [{"anything-but": 123}]}, {"x": 124}, True, id="ab-single-number-other"),
    _({"x": [{"anything-but": 123}]}, {"x": 123}, False, id="ab-single-number-same"),
    _({"x": [{"anything-but": [1]}]}, {"x": True}, True, id="ab-number-vs-bool"),
    _({"x": [{"anything-but": [0]}]}, {"x": False}, True, id="ab-zero-vs-false"),
    _({"x": [{"anything-but": ["a"]}]}, {"x": {"y": "b"}}, False, id="ab-object-not-leaf"),
    _({"x": [{"anything-but": ["a"]}]}, {"x": ["a", "b"]}, True, id="ab-array-one-other"),
    _({"x": [{"anything-but": ["a"]}]}, {"x": ["a", "a"]}, False, id="ab-array-all-excluded"),
    _({"x": [{"anything-but": ["a"]}]}, {"x": []}, False, id="ab-empty-array"),
    _(
        {"$or": [{"x": [{"anything-but": ["a"]}]}, {"x": [{"exists": False}]}]},
        {},
        True,
        id="ab-or-absent-idiom",
    ),
    # --- numeric --------------------------------------------------------------------------
    _({"Price": [{"numeric": ["=", 100]}]}, {"Price": 100}, True, id="num-eq"),
    _({"Price": [{"numeric": ["=", 100]}]}, {"Price": 100.0}, True, id="num-eq-float"),
    _({"Price": [{"numeric": ["=", 100]}]}, {"Price": 100.5}, False, id="num-eq-other"),
    _({"Price": [{"numeric": ["=", 100]}]}, {"Price": "100"}, False, id="num-eq-string"),
    _({"Price": [{"numeric": ["=", 1]}]}, {"Price": True}, False, id="num-eq-vs-true"),
    _({"Price": [{"numeric": [">=", 0]}]}, {"Price": False}, False, id="num-vs-false"),
    _({"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 10}, False, id="range-low-open"),
    _({"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 10.5}, True, id="range-inside"),
    _({"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20}, True, id="range-high-closed"),
    _({"Price": [{"numeric": [">", 10, "<=", 20]}]}, {"Price": 20.001}, False, id="range-above"),
    _({"Price": [{"numeric": [">=", 10, "<", 20]}]}, {"Price": 10}, True, id="range-low-closed"),
    _({"Price": [{"numeric": [">=", 10, "<", 20]}]}, {"Price": 20}, False, id="range-high-open"),
    _({"P": [{"numeric": [">", 0, "<=", 5]}]}, {"P": 5}, True, id="range-doc-example"),
    _({"P": [{"numeric": [">", 0, "<=", 5]}]}, {"P": 0}, False, id="range-doc-example-zero"),
    _({"P": [{"numeric": [">=", -1.5]}]}, {"P": -1.5}, True, id="num-ge-negative"),
    _({"P": [{"numeric": [">=", -1.5]}]}, {"P": -2}, False, id="num-ge-below"),
    _({"P": [{"numeric": ["<", 5]}]}, {"P": 4.999}, True, id="num-lt"),
    _({"P": [{"numeric": ["<", 5]}]}, {"P": 5}, False, id="num-lt-edge"),
    _({"P": [{"numeric": ["<=", 5]}]}, {"P": 5}, True, id="num-le-edge"),
    _({"P": [{"numeric": [">", 5]}]}, {"P": 5}, False, id="num-gt-edge"),
    _({"P": [{"numeric": [">", 5]}]}, {}, False, id="num-missing"),
    _({"P": [{"numeric": [">", 5]}]}, {"P": None}, False, id="num-null"),
    _({"P": [{"numeric": [">", 10]}]}, {"P": [1, 50]}, True, id="num-array-any"),
    _({"P": [{"numeric": [">", 10]}]}, {"P": [1, 5]}, False, id="num-array-none"),
    _(
        {"P": [{"numeric": ["<", 0]}, {"numeric": [">", 100]}]},
        {"P": 150},
        True,
        id="num-two-ranges-or",
    ),
    _(
        {"P": [{"numeric": ["<", 0]}, {"numeric": [">", 100]}]},
        {"P": 50},
        False,
        id="num-two-ranges-gap",
    ),
    # --- exists ---------------------------------------------------------------------------
    _({"ProductName": [{"exists": True}]}, {"ProductName": "x"}, True, id="exists-present"),
    _({"ProductName": [{"exists": True}]}, {}, False, id="exists-missing"),
    _({"ProductName": [{"exists": True}]}, {"ProductName": None}, True, id="exists-null"),
    _({"ProductName": [{"exists": True}]}, {"ProductName": ""}, True, id="exists-empty-string"),
    _({"ProductName": [{"exists": True}]}, {"ProductName": 0}, True, id="exists-zero"),
    _({"ProductName": [{"exists": True}]}, {"ProductName": False}, True, id="exists-false-value"),
    _({"ProductName": [{"exists": True}]}, {"ProductName": {"a": 1}}, False, id="exists-object"),
    _({"ProductName": [{"exists": True}]}, {"ProductName": []}, False, id="exists-empty-array"),
    _({"ProductName": [{"exists": True}]}, {"ProductName": ["a"]}, True, id="exists-array"),
    _({"ProductName": [{"exists": False}]}, {}, True, id="not-exists-missing"),
    _({"ProductName": [{"exists": False}]}, {"ProductName": "x"}, False, id="not-exists-present"),
    _({"ProductName": [{"exists": False}]}, {"ProductName": None}, False, id="not-exists-null"),
    _({"ProductName": [{"exists": False}]}, {"ProductName": ""}, False, id="not-exists-empty"),
    _({"ProductName": [{"exists": False}]}, {"ProductName": []}, True, id="not-exists-empty-arr"),
    _(
        {"detail": {"c-count": [{"exists": False}]}},
        {"detail": {"c-count": {"c1": 100}}},
        True,
        id="not-exists-object-value-eventbridge-doc",
    ),
    _(
        {"detail": {"c-count": [{"exists": False}]}},
        {"detail": {"state": "running"}},
        True,
        id="not-exists-sibling-only",
    ),
    _({"a": {"b": {"c": [{"exists": False}]}}}, {}, True, id="not-exists-missing-grandparent"),
    _({"a": {"b": {"c": [{"exists": False}]}}}, {"a": {}}, True, id="not-exists-missing-parent"),
    _({"a": {"b": {"c": [{"exists": False}]}}}, {"a": 5}, True, id="not-exists-scalar-parent"),
    _({"a": {"b": {"c": [{"exists": False}]}}}, {"a": None}, True, id="not-exists-null-parent"),
    _(
        {"a": {"b": {"c": [{"exists": False}]}}},
        {"a": {"b": "text"}},
        True,
        id="not-exists-string-parent",
    ),
    _(
        {"a": {"b": {"c": [{"exists": False}]}}},
        {"a": {"b": {"c": 1}}},
        False,
        id="not-exists-deep-present",
    ),
    _({"a": {"b": {"c": [{"exists": True}]}}}, {"a": 5}, False, id="exists-scalar-parent"),
    _({"a": {"b": {"c": [{"exists": True}]}}}, {}, False, id="exists-missing-parent"),
    _(
        {"a": {"b": [{"exists": False}], "c": ["x"]}},
        {"a": {"c": "x"}},
        True,
        id="not-exists-with-sibling-equals",
    ),
    _(
        {"a": {"b": [{"exists": False}], "c": ["x"]}},
        {},
        False,
        id="not-exists-with-sibling-missing",
    ),
    _({"a": [{"exists": True}, "zz"]}, {"a": "b"}, True, id="exists-or-value"),
    # --- prefix / suffix ---------------------------------------------------------------
    _({"Region": [{"prefix": "us-"}]}, {"Region": "us-east-1"}, True, id="prefix"),
    _({"Region": [{"prefix": "us-"}]}, {"Region": "eu-west-1"}, False, id="prefix-miss"),
    _({"Region": [{"prefix": "us-"}]}, {"Region": "US-east-1"}, False, id="prefix-case"),
    _({"Region": [{"prefix": "us-"}]}, {"Region": "us"}, False, id="prefix-shorter"),
    _({"Region": [{"prefix": "1"}]}, {"Region": 123}, False, id="prefix-number-value"),
    _({"Region": [{"prefix": "us-"}]}, {}, False, id="prefix-missing"),
    _({"Region": [{"prefix": ""}]}, {"Region": ""}, True, id="prefix-empty"),
    _({"Region": [{"prefix": "us-"}]}, {"Region": ["eu-1", "us-2"]}, True, id="prefix-array"),
    _({"FileName": [{"suffix": ".png"}]}, {"FileName": "cat.png"}, True, id="suffix"),
    _({"FileName": [{"suffix": ".png"}]}, {"FileName": "cat.PNG"}, False, id="suffix-case"),
    _({"FileName": [{"suffix": ".png"}]}, {"FileName": "png.txt"}, False, id="suffix-miss"),
    _({"FileName": [{"suffix": ".png"}]}, {"FileName": None}, False, id="suffix-null"),
    _(
        {"f": [{"prefix": "img/"}, {"suffix": ".png"}, "README"]},
        {"f": "docs/a.png"},
        True,
        id="mixed-operators-or",
    ),
    _(
        {"f": [{"prefix": "img/"}, {"suffix": ".png"}, "README"]},
        {"f": "docs/a.gif"},
        False,
        id="mixed-operators-none",
    ),
    # --- $or ------------------------------------------------------------------------------
    _(
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        {"Location": "New York", "Day": "Friday"},
        True,
        id="or-top-first",
    ),
    _(
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        {"Day": "Monday"},
        True,
        id="or-top-second",
    ),
    _(
        {"$or": [{"Location": ["New York"]}, {"Day": ["Monday"]}]},
        {"Location": "Boston", "Day": "Friday"},
        False,
        id="or-top-none",
    ),
    _(
        {"source": ["aws.cloudwatch"], "$or": [{"metric": ["CPU"]}, {"ns": ["AWS/EC2"]}]},
        {"source": "aws.cloudwatch", "ns": "AWS/EC2"},
        True,
        id="or-and-sibling",
    ),
    _(
        {"source": ["aws.cloudwatch"], "$or": [{"metric": ["CPU"]}, {"ns": ["AWS/EC2"]}]},
        {"source": "aws.s3", "ns": "AWS/EC2"},
        False,
        id="or-sibling-fails",
    ),
    _(
        {"detail": {"$or": [{"c": [{"numeric": [">", 0]}]}, {"d": [{"numeric": ["<", 10]}]}]}},
        {"detail": {"d": 3}},
        True,
        id="or-nested",
    ),
    _(
        {"detail": {"$or": [{"c": [{"numeric": [">", 0]}]}, {"d": [{"numeric": ["<", 10]}]}]}},
        {"detail": {"c": -1, "d": 30}},
        False,
        id="or-nested-none",
    ),
    _(
        {"detail": {"$or": [{"c": ["x"]}, {"d": ["y"]}]}},
        {},
        False,
        id="or-nested-missing-parent",
    ),
    _(
        {"$or": [{"a": ["1"]}, {"b": ["2"], "$or": [{"c": ["3"]}, {"d": ["4"]}]}]},
        {"b": "2", "d": "4"},
        True,
        id="or-inside-or",
    ),
    _(
        {"$or": [{"a": ["1"]}, {"b": ["2"], "$or": [{"c": ["3"]}, {"d": ["4"]}]}]},
        {"b": "2", "d": "5"},
        False,
        id="or-inside-or-miss",
    ),
    _(
        {"$or": [{"a": ["1"]}, {"b": ["2"]}], "x": {"$or": [{"c": ["3"]}, {"d": ["4"]}]}},
        {"b": "2", "x": {"c": "3"}},
        True,
        id="or-parallel",
    ),
    # --- nested objects ---------------------------------------------------------------
    _({"a": {"b": {"c": ["x"]}}}, {"a": {"b": {"c": "x"}}}, True, id="nested-deep"),
    _({"a": {"b": {"c": ["x"]}}}, {"a": {"b": {"c": "y"}}}, False, id="nested-deep-other"),
    _({"a": {"b": {"c": ["x"]}}}, {"a": {}}, False, id="nested-missing-parent"),
    _({"a": {"b": ["x"]}}, {"a": "x"}, False, id="nested-scalar-instead-of-object"),
    _({"a": ["x"]}, {"a": {"b": "x"}}, False, id="leaf-pattern-object-value"),
    _({"a.b": ["x"]}, {"a": {"b": "x"}}, False, id="dotted-key-is-literal"),
    _({"a.b": ["x"]}, {"a.b": "x"}, True, id="dotted-key-literal-match"),
    # --- arrays in the record ---------------------------------------------------------
    _({"tags": ["b"]}, {"tags": ["a", "b"]}, True, id="array-any-element"),
    _({"tags": ["c"]}, {"tags": ["a", "b"]}, False, id="array-no-element"),
    _({"tags": ["a"]}, {"tags": []}, False, id="array-empty"),
    _({"tags": ["b"]}, {"tags": [["a"], ["b"]]}, True, id="array-nested-flattened"),
    _({"tags": [None]}, {"tags": ["a", None]}, True, id="array-null-element"),
    _({"tags": [5]}, {"tags": [True, 5.0]}, True, id="array-number-element"),
    _({"tags": [1]}, {"tags": [True]}, False, id="array-bool-is-not-number"),
    _({"employees": {"firstName": ["Anna"]}}, EMPLOYEES, True, id="array-of-objects"),
    _({"employees": {"firstName": ["Zoe"]}}, EMPLOYEES, False, id="array-of-objects-miss"),
    _(
        {"employees": {"firstName": ["Anna"], "lastName": ["Smith"]}},
        EMPLOYEES,
        True,
        id="array-of-objects-same-element",
    ),
    _(
        {"employees": {"firstName": ["Anna"], "lastName": ["Jones"]}},
        EMPLOYEES,
        False,
        id="array-of-objects-fields-from-different-elements",
    ),
    _(
        {"rows": {"id": ["b"]}},
        {"rows": [[{"id": "a"}], [{"id": "b"}]]},
        True,
        id="array-nested-objects",
    ),
    _(
        {"employees": {"middle": [{"exists": False}]}},
        EMPLOYEES,
        True,
        id="array-of-objects-element-lacks-field",
    ),
    _(
        {"employees": {"lastName": [{"exists": False}]}},
        EMPLOYEES,
        False,
        id="array-of-objects-all-have-field",
    ),
    _({"items": {"id": [{"exists": False}]}}, {"items": []}, True, id="empty-array-parent"),
    _({"items": {"id": [{"exists": True}]}}, {"items": [1, 2]}, False, id="scalar-array-parent"),
]


def _forms(pattern: dict[str, Any]) -> list[Pattern]:
    """The same pattern compiled from its JSON text and from the parsed mapping."""
    return [compile_pattern(json.dumps(pattern)), compile_pattern(pattern)]


@pytest.mark.parametrize(("pattern", "record", "expected"), MATCH_CASES)
def test_pattern_matches(pattern: dict[str, Any], record: dict[str, Any], expected: bool) -> None:
    for compiled in _forms(pattern):
        assert compiled.matches(record) is expected
        assert FilterSet([pattern]).matches(record) is expected


# --- several filters (FilterCriteria) ----------------------------------------------------

FILTER_SET_CASES = [
    _([{"a": ["1"]}, {"b": ["2"]}], {"a": "1"}, True, id="first-filter"),
    _([{"a": ["1"]}, {"b": ["2"]}], {"b": "2"}, True, id="second-filter"),
    _([{"a": ["1"]}, {"b": ["2"]}], {"a": "2", "b": "1"}, False, id="no-filter"),
    _(['{"a": ["1"]}', {"b": ["2"]}], {"b": "2"}, True, id="mixed-string-and-mapping"),
    _(
        [{"body": {"RequestCode": ["BBBB"]}}, {"body": {"RecordNumber": [1234]}}],
        SQS_RECORD,
        True,
        id="sqs-second-filter",
    ),
    _([], {"anything": "at all"}, True, id="empty-set-passes-everything"),
    _([], {}, True, id="empty-set-passes-empty-record"),
]


@pytest.mark.parametrize(("patterns", "record", "expected"), FILTER_SET_CASES)
def test_filter_set_any_of(
    patterns: list[str | dict[str, Any]], record: dict[str, Any], expected: bool
) -> None:
    assert FilterSet(patterns).matches(record) is expected


def test_filter_set_truthiness_and_patterns() -> None:
    assert not FilterSet([])
    assert FilterSet([{"a": ["1"]}])
    filters = FilterSet([{"a": ["1"]}, '{"b": [2]}'])
    assert [p.source for p in filters.patterns] == ['{"a":["1"]}', '{"b":[2]}']


def test_filter_set_limit() -> None:
    FilterSet([{"a": [i]} for i in range(MAX_FILTERS)])
    with pytest.raises(FilterPatternError, match="at most 10 filters"):
        FilterSet([{"a": [i]} for i in range(MAX_FILTERS + 1)])


@pytest.mark.parametrize(
    ("patterns", "fragment"),
    [
        _([{"a": ["x"]}, {"b": []}], 'pattern 1: key "b": a match array must not be empty', id="1"),
        _(["{}"], "pattern 0: pattern must not be an empty object", id="0"),
        _(
            [{"a": ["x"]}, {"a": ["x"]}, {"body": {"size": [{"numeric": [">", "5"]}]}}],
            'pattern 2: key "body.size": numeric operand of ">" must be a number',
            id="2",
        ),
        _('{"a": ["x"]}', "sequence of patterns, got str", id="single-string"),
        _({"a": ["x"]}, "sequence of patterns, got dict", id="single-mapping"),
    ],
)
def test_filter_set_errors_name_the_pattern(patterns: Any, fragment: str) -> None:
    with pytest.raises(FilterPatternError) as info:
        FilterSet(patterns)
    assert fragment in str(info.value)


# --- the pattern object --------------------------------------------------------------------


def test_pattern_is_immutable_and_reusable() -> None:
    pattern = compile_pattern('{ "a" : [ 1, 2 ] }')
    assert pattern.source == '{"a":[1,2]}'
    assert repr(pattern) == "Pattern('{\"a\":[1,2]}')"
    with pytest.raises(AttributeError):
        pattern.source = "{}"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        pattern.__setattr__("_check", None)
    assert [pattern.matches({"a": v}) for v in (1, 2, 3, 1)] == [True, True, False, True]


def test_mapping_pattern_accepts_tuples() -> None:
    assert compile_pattern({"a": ("x", "y")}).matches({"a": "y"})


def test_pattern_length_limit() -> None:
    def of_length(n: int) -> str:
        text = '{"a":["' + "x" * (n - 10) + '"]}'
        assert len(text) == n
        return text

    compile_pattern(of_length(MAX_PATTERN_LENGTH))
    with pytest.raises(FilterPatternError, match="4097 characters; Lambda allows at most 4096"):
        compile_pattern(of_length(MAX_PATTERN_LENGTH + 1))
    compile_pattern({"a": ["x" * (MAX_PATTERN_LENGTH - 10)]})
    with pytest.raises(FilterPatternError, match="4097 characters as compact JSON"):
        compile_pattern({"a": ["x" * (MAX_PATTERN_LENGTH - 9)]})


# --- bad patterns -----------------------------------------------------------------------

BAD_PATTERNS = [
    _("", "not valid JSON", id="empty-string"),
    _('{"a": ["x"]', "not valid JSON", id="truncated-json"),
    _('{"a": [NaN]}', "NaN is not a JSON value", id="json-nan"),
    _('{"a": [Infinity]}', "Infinity is not a JSON value", id="json-infinity"),
    _('["a"]', "pattern must be a JSON object, got array", id="top-level-array"),
    _('"a"', "pattern must be a JSON object, got string", id="top-level-string"),
    _("{}", "pattern must not be an empty object", id="top-level-empty"),
    _(["a"], "JSON string or a mapping, got list", id="python-list"),
    _(
        {"a": "x"},
        'key "a": value must be an array of match values or a nested object, got string',
        id="leaf-not-array",
    ),
    _({"a": 5}, 'key "a": value must be an array', id="leaf-number"),
    _({"a": None}, 'key "a": value must be an array', id="leaf-null"),
    _({"a": []}, 'key "a": a match array must not be empty', id="leaf-empty-array"),
    _({"a": {}}, 'key "a": an object in a pattern must not be empty', id="nested-empty-object"),
    _({"a": {"b": {}}}, 'key "a.b": an object in a pattern must not be empty', id="deep-empty"),
    _(
        {"a": [["x"]]},
        'key "a": match value must be a string, number, boolean, null or an '
        "operator object, got array",
        id="nested-array-in-leaf",
    ),
    _({1: ["x"]}, "keys must be strings, got number 1", id="non-string-key"),
    _({"a": [float("nan")]}, 'key "a": match value must be a finite number', id="nan-value"),
    _({"a": [{"wildcard": "a*"}]}, 'operator "wildcard" is not supported by Lambda', id="wildcard"),
    _({"a": [{"cidr": "10.0.0.0/24"}]}, 'operator "cidr" is not supported by Lambda', id="cidr"),
    _({"a": [{"contains": "x"}]}, 'key "a": unknown operator "contains"', id="unknown-operator"),
    _({"a": [{}]}, "an operator object must have exactly one key, got none", id="empty-operator"),
    _(
        {"a": [{"prefix": "x", "suffix": "y"}]},
        'exactly one key, got "prefix", "suffix"',
        id="two-operators",
    ),
    _({"a": [{"prefix": 5}]}, 'key "a": prefix needs a string, got number', id="prefix-number"),
    _(
        {"a": [{"prefix": {"equals-ignore-case": "x"}}]},
        "prefix needs a string, got object",
        id="prefix-ignore-case-form",
    ),
    _({"a": [{"suffix": None}]}, "suffix needs a string, got null", id="suffix-null"),
    _(
        {"a": [{"equals-ignore-case": ["x"]}]},
        "equals-ignore-case needs a string, got array",
        id="ignore-case-array",
    ),
    _({"a": [{"exists": "true"}]}, "exists needs true or false, got string", id="exists-string"),
    _({"a": [{"exists": 1}]}, "exists needs true or false, got number", id="exists-number"),
    _({"a": [{"anything-but": []}]}, "anything-but list must not be empty", id="ab-empty"),
    _({"a": [{"anything-but": [None]}]}, "only strings or numbers, got null", id="ab-null"),
    _({"a": [{"anything-but": [True]}]}, "only strings or numbers, got boolean", id="ab-bool"),
    _(
        {"a": [{"anything-but": True}]},
        "anything-but needs a string, a number, or a list",
        id="ab-single-bool",
    ),
    _({"a": [{"anything-but": ["x", 1]}]}, "only strings or only numbers, not both", id="ab-mixed"),
    _(
        {"a": [{"anything-but": {"prefix": "x"}}]},
        "anything-but with a nested operator",
        id="ab-prefix-form",
    ),
    _({"a": [{"numeric": 5}]}, 'numeric needs ["=", n]', id="numeric-not-array"),
    _({"a": [{"numeric": []}]}, 'numeric needs ["=", n]', id="numeric-empty"),
    _({"a": [{"numeric": [">", 1, "<"]}]}, 'numeric needs ["=", n]', id="numeric-odd-terms"),
    _({"a": [{"numeric": [">", 1, "<", 5, "<", 6]}]}, "numeric needs", id="numeric-six-terms"),
    _(
        {"a": [{"numeric": ["==", 1]}]},
        'numeric operator must be one of =, <, <=, >, >=; got "=="',
        id="numeric-bad-op",
    ),
    _({"a": [{"numeric": [1, ">"]}]}, "numeric operator must be one of", id="numeric-swapped"),
    _(
        {"a": [{"numeric": [">", "5"]}]},
        'numeric operand of ">" must be a number, got string',
        id="numeric-string-operand",
    ),
    _(
        {"a": [{"numeric": ["=", True]}]},
        'numeric operand of "=" must be a number, got boolean',
        id="numeric-bool-operand",
    ),
    _({"a": [{"numeric": ["<", 5, ">", 1]}]}, 'got "<" then ">"', id="numeric-range-reversed"),
    _({"a": [{"numeric": ["=", 5, "<", 6]}]}, 'got "=" then "<"', id="numeric-range-with-eq"),
    _({"a": [{"numeric": [">", 5, ">", 6]}]}, 'got ">" then ">"', id="numeric-two-lower"),
    _({"a": [{"numeric": [">", 5, "<", 1]}]}, "matches no number", id="numeric-empty-range"),
    _({"a": [{"numeric": [">", 5, "<=", 5]}]}, "matches no number", id="numeric-open-point"),
    _(
        {"body": {"size": [{"numeric": [">", 0, "<=", "5"]}]}},
        'key "body.size": numeric operand of "<=" must be a number',
        id="numeric-nested-path",
    ),
    _(
        {"$or": [{"a": ["x"]}]},
        'key "$or": $or needs an array of at least 2 pattern objects',
        id="or-one-branch",
    ),
    _({"$or": {"a": ["x"]}}, "$or needs an array", id="or-object"),
    _(
        {"$or": [{"a": ["x"]}, "b"]},
        'key "$or[1]": $or elements must be objects, got string',
        id="or-non-object",
    ),
    _(
        {"$or": [{"a": ["x"]}, {}]},
        'key "$or[1]": an object in a pattern must not be empty',
        id="or-empty-branch",
    ),
    _(
        {"d": {"$or": [{"a": ["x"]}, {"b": []}]}},
        'key "d.$or[1].b": a match array must not be',
        id="or-nested-path",
    ),
    _(
        {"$or": [{"a": ["x"]}, {"prefix": ["y"]}]},
        '"prefix" is an operator and cannot be a field',
        id="or-operator-as-field",
    ),
]


@pytest.mark.parametrize(("pattern", "fragment"), BAD_PATTERNS)
def test_bad_patterns(pattern: Any, fragment: str) -> None:
    with pytest.raises(FilterPatternError) as info:
        compile_pattern(pattern)
    assert fragment in str(info.value)
    assert isinstance(info.value, ValueError)


# --- payloads that are not JSON -------------------------------------------------------


def test_text_that_is_not_json_matches_string_patterns_but_no_pattern_inside_it() -> None:
    from bridge.filtering import NotJson

    record = {"body": NotJson("plain text")}
    assert compile_pattern({"body": [{"prefix": "plain"}]}).matches(record)
    assert compile_pattern({"body": ["plain text"]}).matches(record)
    assert not compile_pattern({"body": {"field": [{"exists": False}]}}).matches(record)
    assert not compile_pattern({"body": {"field": ["x"]}}).matches(record)
    # an ordinary string value under a JSON object keeps EventBridge's rule
    assert compile_pattern({"body": {"field": [{"exists": False}]}}).matches({"body": "text"})


def test_a_payload_that_is_not_text_matches_nothing() -> None:
    from bridge.filtering import UNREADABLE

    record = {"value": UNREADABLE, "topic": "t"}
    for pattern in (
        {"value": [{"anything-but": ["error"]}]},
        {"value": [{"exists": True}]},
        {"value": [{"exists": False}]},
        {"value": {"f": [{"exists": False}]}},
    ):
        assert not compile_pattern(pattern).matches(record), pattern
    assert compile_pattern({"topic": ["t"]}).matches(record)


def test_sqs_and_kafka_views_mark_what_is_not_json() -> None:
    import base64

    from bridge.filtering import UNREADABLE, NotJson
    from connectors.kafka.normalize import filter_view as kafka_view
    from connectors.sqs.normalize import filter_view as sqs_view

    assert sqs_view({"body": '{"a": 1}'})["body"] == {"a": 1}
    assert isinstance(sqs_view({"body": "hi"})["body"], NotJson)
    encoded = base64.b64encode(b"\xff\xfe").decode()
    assert kafka_view({"value": encoded})["value"] is UNREADABLE
    assert isinstance(kafka_view({"value": base64.b64encode(b"hi").decode()})["value"], NotJson)
    assert kafka_view({"value": base64.b64encode(b'{"k": 2}').decode()})["value"] == {"k": 2}
