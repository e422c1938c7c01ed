# ferry: two commands for a new user, `make demo` and `make test`.
export PATH := $(PATH):/usr/local/go/bin:/usr/sbin
GO ?= go

.PHONY: all deps test test-short vet demo bench clean

all: test

deps:
	@./scripts/deps.sh

vet: deps
	$(GO) vet ./...

# Every test, with the race detector, against real sandbox MariaDB servers the tests start.
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 14m ./...

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
