# make demo: the seed scenario with its figures (DEMO_SECS=N seconds per
#            variant, DEMO_TSV=path to also write the table as TSV).
# make test: lint, the pure-Go tests under the race detector and the
#            end-to-end tests, with each notifier (eventfd, self-pipe).
# Both first install the Debian packages they need if they are missing.

DEMO_SECS ?= 6
STATICCHECK_VERSION = v0.8.2
GOBIN ?= $(shell go env GOPATH)/bin

.PHONY: demo test lint build deps bench bench-instr benchmarks

deps:
	./.ci/install-deps

build: deps
	dune build

demo: build
	./_build/default/test/seed.exe --secs $(DEMO_SECS) --gc-smoke 2 $(if $(DEMO_TSV),--tsv $(DEMO_TSV))

# make bench: every figure of the bridge, each with its baseline in the same
#             run, interleaved (BENCH_SECS=N seconds per variant, BENCH_TSV=path
#             to also write them as TSV). See bench/bench.ml.
BENCH_SECS ?= 3

bench: build
	./_build/default/bench/bench.exe --secs $(BENCH_SECS) --seed ./_build/default/test/seed.exe --app ./_build/default/bench/app.exe $(if $(BENCH_TSV),--tsv $(BENCH_TSV))

# make bench-instr: instructions per iteration or call on the Lwt thread
#             (the main thread, where a round trip runs), counted by valgrind's
#             callgrind: stable on a noisy machine, unlike times. TSV rows,
#             also in _build/bench-instr.tsv; INSTR_N iterations each. Go's
#             asynchronous preemption (signals) and RDTSCP (which valgrind
#             3.19 does not decode) are off under valgrind.
INSTR_N ?= 20000

bench-instr: deps
	./.ci/install-deps valgrind  # before the build: the C stubs include its callgrind.h
	dune build
	rm -rf _build/callgrind && mkdir -p _build/callgrind
	for exe in test/seed bench/bench; do \
		GODEBUG=asyncpreemptoff=1,cpu.rdtscp=off valgrind -q --tool=callgrind --separate-threads=yes \
			--callgrind-out-file=_build/callgrind/$$(basename $$exe).%p ./_build/default/$$exe.exe --instr $(INSTR_N) \
			2>_build/callgrind/$$(basename $$exe).log || { cat _build/callgrind/$$(basename $$exe).log; exit 1; }; \
	done
	cat _build/callgrind/*.*-01 | awk -f bench/callgrind.awk | tee _build/bench-instr.tsv | grep -q . || \
		{ echo "no counts: the C stubs were built without valgrind's headers (dune clean, then again)"; exit 1; }
	cat _build/bench-instr.tsv

# make benchmarks: make bench and make bench-instr, then BENCHMARKS.md's table
# written from their TSV.
benchmarks: build bench-instr
	./_build/default/bench/bench.exe --secs $(BENCH_SECS) --seed ./_build/default/test/seed.exe --app ./_build/default/bench/app.exe --tsv _build/bench.tsv
	cat _build/bench-instr.tsv >> _build/bench.tsv
	{ sed '/<!-- table: begin -->/q' BENCHMARKS.md; echo; echo "$$(date +%F), $$(nproc) CPUs, OCaml $$(ocamlfind ocamlopt -version):"; echo; \
	  awk -f bench/tsv2md.awk _build/bench.tsv; echo; sed -n '/<!-- table: end -->/,$$p' BENCHMARKS.md; } > _build/BENCHMARKS.md
	mv _build/BENCHMARKS.md BENCHMARKS.md

lint: deps
	@files=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$files" || { echo "gofmt would change: $$files"; exit 1; }
	go vet ./...
	go vet -tags lwt_selfpipe ./...
	GOOS=darwin go vet ./notify_other.go  # the self-pipe notifier type-checks off Linux
	test -x $(GOBIN)/staticcheck || go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...
	dune build @@check  # this folder only: compiles lwt_interop.mli, for ocamldoc (bench/app needs cohttp, which OCaml 5.2's CI toolchain lacks)
	mkdir -p _build/doc && ocamlfind ocamldoc -package lwt.unix -I _build/default/.lwt_interop.objs/byte \
		-html -d _build/doc -warn-error lwt_interop.mli

test: lint
	go test -race -count=1 ./...
	go test -race -count=1 -tags lwt_selfpipe ./...
