# ferry: two commands for a new user, `make demo` and `make test`.
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin
GO ?= go

.PHONY: all deps test test-dsn test-short vet demo bench clean

all: test

deps:
	@./scripts/deps.sh

vet: deps
	$(GO) vet ./...

# Every test, with the race detector, against real sandbox MariaDB servers the tests start.
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 14m ./...

# The packages that need one server, against a throw-away server of yours:
#   FERRY_TEST_DSN='user:password@tcp(127.0.0.1:3306)/' make test-dsn
# It must have log_bin, binlog_format=ROW and binlog_row_image=FULL; the tests create and drop their
# databases on it, one package at a time. Packages that need two servers at once (a source and a
# target, a replica) or crash their server refuse to run this way: use `make test`.
test-dsn:
	@test -n "$$FERRY_TEST_DSN" || { echo "make test-dsn: set FERRY_TEST_DSN to a throw-away server's DSN" >&2; exit 2; }
	$(GO) test -race -count=1 -p 1 -timeout 14m ./osc/ ./schema/ ./internal/...

test-short: deps
	$(GO) test -short -count=1 ./...

demo: deps
	$(GO) build -o bin/copydb ./examples/copydb
	$(GO) run ./examples/demo -copydb bin/copydb

bench: deps
	@./scripts/bench-deps.sh || echo "bench: mydumper/zstd could not be installed; the snapshot section reports them as not measured" >&2
	$(GO) run ./test/bench $(BENCHFLAGS)

clean:
	rm -rf /tmp/ferry-sandbox-*
