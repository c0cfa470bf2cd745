module harness.test/fixture

go 1.21
