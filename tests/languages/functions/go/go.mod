module example.com/languages/gofunction

go 1.24

require github.com/aws/aws-lambda-go v1.54.0
