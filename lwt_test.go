package lwt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"lwt/internal/getg"
)

// simLoop is a bridge on a simulated Lwt thread (Simulate), for the
// pure-Go tests.
type simLoop struct {
	l        *loop
	stopLoop func() error
}

func startSim(t *testing.T) *simLoop {
	t.Helper()
	stop, err := Simulate()
	if err != nil {
		t.Fatal(err)
	}
	s := &simLoop{l: current.Load(), stopLoop: stop}
	t.Cleanup(func() { s.stop(t) })
	return s
}

// enter runs fn as an OCaml→Go entry, as export.go does.
func enter(l *loop, fn func()) {
	l.arrive()
	defer l.leave()
	fn()
}

// stop shuts the bridge down on the Lwt thread; idempotent.
func (s *simLoop) stop(t *testing.T) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.stopLoop() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the simulated Lwt thread did not shut down")
	}
}

// onLoop runs fn as an outermost entry on the Lwt thread and waits for it.
func (s *simLoop) onLoop(t *testing.T, fn func()) {
	t.Helper()
	ran := make(chan struct{})
	if err := s.l.post(func() { fn(); close(ran) }); err != nil {
		t.Fatal(err)
	}
	<-ran
}

func await[T any](t *testing.T, p *Promise[T]) (T, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := p.Await(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("promise not settled in 10s")
	}
	return v, err
}

// wakesPending reads the notifier as the Lwt side would and returns how many
// wakes it carried: the eventfd counter, or the bytes in the self-pipe.
func wakesPending(t *testing.T, n *notifier) int {
	t.Helper()
	buf := make([]byte, 64)
	k, err := unix.Read(n.readFD(), buf)
	if err == unix.EAGAIN {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	if notifierKind == "eventfd" {
		return int(binary.NativeEndian.Uint64(buf[:8]))
	}
	return k
}

func TestNotifierWakeDrain(t *testing.T) {
	n, err := newNotifier()
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	if got := wakesPending(t, n); got != 0 {
		t.Fatalf("fresh notifier carries %d wakes", got)
	}
	for range 3 {
		if err := n.wake(); err != nil {
			t.Fatal(err)
		}
	}
	n.drain()
	if got := wakesPending(t, n); got != 0 {
		t.Fatalf("drained notifier still carries %d wakes", got)
	}
}

func TestPostCoalescesWakes(t *testing.T) {
	l, err := newLoop()
	if err != nil {
		t.Fatal(err)
	}
	defer l.notify.close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if err := l.post(func() {}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got := wakesPending(t, l.notify); got != 1 {
		t.Fatalf("800 posts wrote the notifier %d times, want 1", got)
	}
	if len(l.jobs) != 800 {
		t.Fatalf("queued %d jobs, want 800", len(l.jobs))
	}
}

func TestRunPendingStopsAtBudgetAndRearms(t *testing.T) {
	l, err := newLoop()
	if err != nil {
		t.Fatal(err)
	}
	defer l.notify.close()
	ran := 0
	for range 2*budget + 1 {
		l.post(func() { ran++ })
	}
	for _, want := range []int{budget, 2 * budget, 2*budget + 1} {
		enter(l, l.runPending)
		if ran != want {
			t.Fatalf("ran %d jobs, want %d", ran, want)
		}
		wakes := wakesPending(t, l.notify)
		if more := ran < 2*budget+1; more != (wakes > 0) {
			t.Fatalf("after %d of %d jobs the notifier carries %d wakes", ran, 2*budget+1, wakes)
		}
		if wakes > 0 {
			l.notify.wake() // put back what wakesPending consumed
		}
	}
}

func TestNestedRunPendingDoesNothing(t *testing.T) {
	l, err := newLoop()
	if err != nil {
		t.Fatal(err)
	}
	defer l.notify.close()
	ran := 0
	l.post(func() { ran++ })
	enter(l, func() { enter(l, l.runPending) })
	if ran != 0 {
		t.Fatal("a nested runPending ran a job")
	}
	enter(l, l.runPending)
	if ran != 1 {
		t.Fatal("the outermost runPending did not run the job")
	}
}

func TestPostRunsJobsOnLoopThreadInOrder(t *testing.T) {
	s := startSim(t)
	const senders, each = 4, 500
	var mu sync.Mutex
	seen := make([]int, senders)
	var wg sync.WaitGroup
	for g := range senders {
		wg.Go(func() {
			for i := range each {
				err := Post(func() {
					if !onLoopThread() {
						t.Error("job ran off the Lwt thread")
					}
					mu.Lock()
					defer mu.Unlock()
					if seen[g] != i {
						t.Errorf("sender %d: job %d ran after job %d", g, i, seen[g]-1)
					}
					seen[g] = i + 1
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	s.onLoop(t, func() {})
	for g, n := range seen {
		if n != each {
			t.Errorf("sender %d: %d of %d jobs ran", g, n, each)
		}
	}
}

func TestTaskAwaitsPromiseResolvedByGoroutine(t *testing.T) {
	startSim(t)
	p, r := NewPromise[int]()
	task := Spawn(context.Background(), func(ctx context.Context) (int, error) {
		v, err := p.Await(ctx)
		if !onLoopThread() {
			return 0, errors.New("task resumed off the Lwt thread")
		}
		return v + 1, err
	})
	go r.Resolve(41)
	if v, err := await(t, task); v != 42 || err != nil {
		t.Fatalf("task returned %v, %v; want 42, nil", v, err)
	}
}

func TestSettleOnLoopResumesTaskAtOnceWithoutWake(t *testing.T) {
	s := startSim(t)
	p, r := NewPromise[int]()
	got := 0
	s.onLoop(t, func() {
		Spawn(context.Background(), func(ctx context.Context) (struct{}, error) {
			v, err := p.Await(ctx)
			got = v
			return struct{}{}, err
		})
	})
	s.onLoop(t, func() {
		s.l.mu.Lock()
		wokenBefore := s.l.woken
		s.l.mu.Unlock()
		r.Resolve(7)
		if got != 7 {
			t.Error("the task did not resume inside Resolve on the Lwt thread")
		}
		s.l.mu.Lock()
		defer s.l.mu.Unlock()
		if s.l.woken != wokenBefore {
			t.Error("resuming a task on the Lwt thread wrote the notifier")
		}
	})
}

func TestNestedEntryQueuesTaskSwitches(t *testing.T) {
	s := startSim(t)
	p, r := NewPromise[int]()
	got := 0
	s.onLoop(t, func() {
		Spawn(context.Background(), func(ctx context.Context) (struct{}, error) {
			v, err := p.Await(ctx)
			got = v
			return struct{}{}, err
		})
	})
	var late *Promise[int]
	s.onLoop(t, func() {
		enter(s.l, func() { // OCaml → Go → OCaml → Go: depth 2
			r.Resolve(1)
			late = Spawn(context.Background(), func(context.Context) (int, error) { return 2, nil })
			if got != 0 {
				t.Error("a nested entry switched to a task")
			}
			if _, _, ok := late.Result(); ok {
				t.Error("a task spawned in a nested entry ran inside it")
			}
		})
	})
	s.onLoop(t, func() { // the next entry: the previous one resumed both before it returned
		if got != 1 {
			t.Error("the outermost entry returned before resuming the task")
		}
		if v, _, ok := late.Result(); !ok || v != 2 {
			t.Error("the outermost entry returned before running the spawned task")
		}
	})
}

func TestAwaitOnLoopOutsideTaskIsAnError(t *testing.T) {
	s := startSim(t)
	p, _ := NewPromise[int]()
	s.onLoop(t, func() {
		if _, err := p.Await(context.Background()); !errors.Is(err, ErrWouldBlock) {
			t.Errorf("Await in a job returned %v, want ErrWouldBlock", err)
		}
	})
	task := Spawn(context.Background(), func(ctx context.Context) (struct{}, error) {
		var err error
		enter(s.l, func() { _, err = p.Await(ctx) }) // a nested entry inside the task
		return struct{}{}, err
	})
	if _, err := await(t, task); !errors.Is(err, ErrWouldBlock) {
		t.Errorf("Await in a nested entry returned %v, want ErrWouldBlock", err)
	}
}

// Rejected(nil) and Reject(nil) both make a rejected promise, never a
// fulfilled one.
func TestRejectingWithNilIsAnError(t *testing.T) {
	if _, err, _ := Rejected[int](nil).Result(); !errors.Is(err, errNilReject) {
		t.Errorf("Rejected(nil): %v", err)
	}
	p, r := NewPromise[int]()
	r.Reject(nil)
	if _, err, _ := p.Result(); !errors.Is(err, errNilReject) {
		t.Errorf("Reject(nil): %v", err)
	}
}

func TestSecondSettleIsAnError(t *testing.T) {
	p, r := NewPromise[string]()
	if err := r.Resolve("first"); err != nil {
		t.Fatal(err)
	}
	if err := r.Resolve("second"); !errors.Is(err, ErrAlreadySettled) {
		t.Fatalf("second Resolve returned %v", err)
	}
	if err := r.Reject(errors.New("late")); !errors.Is(err, ErrAlreadySettled) {
		t.Fatalf("Reject after Resolve returned %v", err)
	}
	if v, err, _ := p.Result(); v != "first" || err != nil {
		t.Fatalf("promise holds %q, %v", v, err)
	}
}

func TestTaskPanicRejectsItsPromise(t *testing.T) {
	startSim(t)
	p := Spawn(context.Background(), func(context.Context) (int, error) {
		var m map[string]*int
		return *m["missing"], nil // a nil dereference
	})
	_, err := await(t, p)
	var pe *PanicError
	if !errors.As(err, &pe) || !strings.Contains(pe.Error(), "nil pointer dereference") {
		t.Fatalf("got %v, want a *PanicError for the nil dereference", err)
	}
	if !strings.Contains(string(pe.Stack), "TestTaskPanicRejectsItsPromise") {
		t.Fatalf("the panic's stack does not show where it happened:\n%s", pe.Stack)
	}
}

func TestCancelWakesTaskAwait(t *testing.T) {
	startSim(t)
	never, _ := NewPromise[int]()
	for _, own := range []bool{true, false} {
		ctx, cancel := context.WithCancel(context.Background())
		task := Spawn(ctx, func(taskCtx context.Context) (int, error) {
			if own {
				return never.Await(taskCtx)
			}
			return never.Await(ctx) // a context the task does not own
		})
		time.AfterFunc(10*time.Millisecond, cancel)
		if _, err := await(t, task); !errors.Is(err, context.Canceled) {
			t.Fatalf("own=%v: got %v, want context.Canceled", own, err)
		}
	}
}

func TestCancelOneOfTwoTasksAwaitingOnePromise(t *testing.T) {
	startSim(t)
	p, r := NewPromise[int]()
	ctx, cancel := context.WithCancel(context.Background())
	awaitWith := func(ctx context.Context) *Promise[int] {
		return Spawn(context.Background(), func(context.Context) (int, error) { return p.Await(ctx) })
	}
	first, second, third := awaitWith(context.Background()), awaitWith(ctx), awaitWith(context.Background())
	cancel()
	if _, err := await(t, second); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled await returned %v", err)
	}
	r.Resolve(9)
	for _, q := range []*Promise[int]{first, third} {
		if v, err := await(t, q); v != 9 || err != nil {
			t.Fatalf("await returned %v, %v; want 9", v, err)
		}
	}
}

func TestGoroutineAwait(t *testing.T) {
	p, r := NewPromise[int]()
	time.AfterFunc(5*time.Millisecond, func() { r.Reject(errors.New("no")) })
	if _, err := await(t, p); err == nil || err.Error() != "no" {
		t.Fatalf("got %v", err)
	}
	q, _ := NewPromise[int]()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	if _, err := q.Await(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
}

func TestThenRunsOnLoopThreadAndChains(t *testing.T) {
	s := startSim(t)
	p, r := NewPromise[int]()
	q := Then(p, func(v int, err error) (string, error) {
		if !onLoopThread() {
			t.Error("Then ran off the Lwt thread")
		}
		return fmt.Sprint(v * 2), err
	})
	q2 := Then(q, func(v string, err error) (int, error) { panic("in a Then") })
	go r.Resolve(3)
	if v, err := await(t, q); v != "6" || err != nil {
		t.Fatalf("Then gave %q, %v", v, err)
	}
	var pe *PanicError
	if _, err := await(t, q2); !errors.As(err, &pe) {
		t.Fatalf("a panic in fn: %v", err)
	}
	// A promise that settles after shutdown: fn never runs, the chain is
	// rejected with ErrClosed.
	late, lr := NewPromise[int]()
	q3 := Then(late, func(int, error) (int, error) { t.Error("fn ran after shutdown"); return 0, nil })
	s.stop(t)
	lr.Resolve(1)
	if _, err := await(t, q3); !errors.Is(err, ErrClosed) {
		t.Fatalf("after shutdown: %v", err)
	}
	if _, err := await(t, Then(p, func(int, error) (int, error) { return 0, nil })); !errors.Is(err, ErrClosed) {
		t.Fatalf("Then with the bridge shut down: %v", err)
	}
}

func TestShutdownStopsTasksAndRejects(t *testing.T) {
	s := startSim(t)
	never, _ := NewPromise[int]()
	polite := Spawn(context.Background(), func(ctx context.Context) (int, error) {
		return never.Await(ctx)
	})
	stubborn := Spawn(context.Background(), func(ctx context.Context) (int, error) {
		for { // ignores ErrClosed: the next Await unwinds it
			never.Await(ctx)
		}
	})
	s.onLoop(t, func() {})
	if n := CurrentStats().Tasks; n != 2 {
		t.Fatalf("%d live tasks, want 2", n)
	}
	s.stop(t)
	for _, p := range []*Promise[int]{polite, stubborn} {
		if _, err := await(t, p); !errors.Is(err, ErrClosed) {
			t.Fatalf("task ended with %v, want ErrClosed", err)
		}
	}
	if st := CurrentStats(); st.Tasks != 0 || st.Jobs != 0 {
		t.Fatalf("after shutdown: %+v", st)
	}
	if err := Post(func() {}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Post after shutdown returned %v", err)
	}
	if _, err := await(t, Spawn(context.Background(), func(context.Context) (int, error) { return 0, nil })); !errors.Is(err, ErrClosed) {
		t.Fatalf("Spawn after shutdown returned %v", err)
	}
}

func TestRestartAfterShutdown(t *testing.T) {
	startSim(t).stop(t)
	startSim(t)
	if v, err := await(t, OnLoop(func() (int, error) { return 5, nil })); v != 5 || err != nil {
		t.Fatalf("OnLoop after restart: %v, %v", v, err)
	}
}

// ocamlPackages are the Debian packages the end-to-end test needs.
const ocamlPackages = "ocaml-nox ocaml-findlib liblwt-ocaml-dev ocaml-dune libalcotest-ocaml-dev"

// requireOCaml skips the test without OCaml, Lwt and dune, but fails it
// under CI, where a skipped end-to-end test would hide a broken setup.
func requireOCaml(t *testing.T) {
	t.Helper()
	var missing []string
	for _, tool := range []string{"dune", "ocamlfind"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		pkgs := []string{"query", "lwt.unix", "alcotest"}
		if vendored, _ := filepath.Glob("ocaml-vendor/alcotest-*"); len(vendored) > 0 {
			pkgs = pkgs[:2] // alcotest vendored, as .ci/ocaml-5.2 does
		}
		if out, err := exec.Command("ocamlfind", pkgs...).CombinedOutput(); err != nil {
			missing = append(missing, strings.TrimSpace(string(out)))
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := "end-to-end test needs OCaml, Lwt, dune and alcotest (missing: " + strings.Join(missing, ", ") +
		"); on Debian: apt-get install " + ocamlPackages
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// TestEndToEnd builds test/ (OCaml + Lwt + the Go archive, with this
// build's notifier) and runs the OCaml suite and a short seed scenario.
// buildEndToEnd builds test/'s targets with dune into _build/e2e-NAME, the
// Go archive built with goflags, and returns the folder of the executables.
func buildEndToEnd(t *testing.T, name, goflags string, targets ...string) string {
	t.Helper()
	buildDir, err := filepath.Abs(filepath.Join("_build", "e2e-"+name))
	if err == nil {
		err = os.MkdirAll(filepath.Dir(buildDir), 0o755) // dune wants the parent to exist
	}
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("dune", append([]string{"build", "--build-dir", buildDir}, targets...)...)
	build.Env = append(os.Environ(), "GOFLAGS="+goflags)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("dune build: %v\n%s", err, out)
	}
	return filepath.Join(buildDir, "default", "test")
}

func TestEndToEnd(t *testing.T) {
	requireOCaml(t)
	targets := []string{"test/test_lwt_interop.exe", "test/test_reliability.exe", "test/seed.exe", "test/cases.exe"}
	version, err := exec.Command("ocamlfind", "ocamlopt", "-version").Output()
	if err != nil {
		t.Fatal(err)
	}
	ocaml5 := !strings.HasPrefix(string(version), "4.")
	if ocaml5 {
		targets = append(targets, "test/ocaml5.exe")
	}
	t.Logf("OCaml %s", strings.TrimSpace(string(version)))
	goflags := ""
	if notifierKind == "self-pipe" {
		goflags = "-tags=lwt_selfpipe"
	}
	bin := buildEndToEnd(t, notifierKind, goflags, targets...)

	for _, suite := range []string{"test_lwt_interop", "test_reliability"} {
		t.Run(suite, func(t *testing.T) {
			// A hang is a failure with the suite's output, not a CI timeout.
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, filepath.Join(bin, suite+".exe")).CombinedOutput()
			if err != nil {
				t.Fatalf("OCaml suite failed: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "Test Successful") {
				t.Fatalf("OCaml suite did not report success:\n%s", out)
			}
			t.Logf("%s", out)
		})
	}

	t.Run("cases", func(t *testing.T) { runCases(t, filepath.Join(bin, "cases.exe"), endToEndCases, false) })
	if ocaml5 {
		t.Run("ocaml5", func(t *testing.T) { runCases(t, filepath.Join(bin, "ocaml5.exe"), ocaml5Cases, false) })
	}

	// The race detector on the real bridge: the API suite, the reliability
	// suite's chaos tests and the cases with the Go archive built with -race
	// (once, with the eventfd notifier). The rest of the reliability suite
	// is left out: the detector's own memory grows with the million round
	// trips that its leak test counts. A race ends the process at once
	// (raceEnv): in a C program, Go's race detector reports it, and the
	// program's exit status does not tell.
	if notifierKind == "eventfd" {
		t.Run("race", func(t *testing.T) {
			bin := buildEndToEnd(t, "race", "-race", "test/test_lwt_interop.exe", "test/test_reliability.exe", "test/cases.exe")
			// --verbose: the tests' output (a race's report) in out, not in Alcotest's logs.
			for _, suite := range [][]string{{"test_lwt_interop.exe", "--verbose"}, {"test_reliability.exe", "test", "chaos", "--verbose"}} {
				// A hang is a failure with the suite's output, not a CI timeout.
				ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
				cmd := exec.CommandContext(ctx, filepath.Join(bin, suite[0]), suite[1:]...)
				cmd.Env = raceEnv
				out, err := cmd.CombinedOutput()
				cancel()
				if err != nil || !strings.Contains(string(out), "Test Successful") {
					t.Fatalf("%v under the race detector: %v\n%s", suite, err, out)
				}
			}
			runCases(t, filepath.Join(bin, "cases.exe"), endToEndCases, true)
		})
	}

	t.Run("seed", func(t *testing.T) {
		tsv := filepath.Join(t.TempDir(), "seed.tsv")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, filepath.Join(bin, "seed.exe"),
			"--secs", "0.6", "--gc-smoke", "0.5", "--tsv", tsv).CombinedOutput()
		if err != nil {
			t.Fatalf("seed scenario failed: %v\n%s", err, out)
		}
		t.Logf("%s", out)
		rows, err := os.ReadFile(tsv)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(string(rows)), "\n") {
			f := strings.Split(line, "\t")
			if len(f) != 5 || f[2] == "0" || f[4] == "0.0" { // variant, F, iter/s, ratio, CPU ns/iter
				t.Errorf("bad or idle row %q", line)
				continue
			}
			seen[f[0]+"/"+f[1]] = true
		}
		for _, v := range []string{"pure-lwt", "go-task", "goroutine"} {
			for _, f := range []string{"pause", "auto_pause"} {
				if !seen[v+"/"+f] {
					t.Errorf("no row for %s/%s", v, f)
				}
			}
		}
	})

	t.Run("go-server", func(t *testing.T) { testGoServer(t) })
	t.Run("http-server", func(t *testing.T) { testHTTPServer(t) })

	t.Run("vendoring guide", func(t *testing.T) {
		// The README's commands, word for word, in a fresh directory. They
		// vendor the repository's HEAD (git archive): commit first when
		// running this locally.
		script := readmeBlock(t, "## Vendoring into your OCaml project", "sh")
		repo, err := filepath.Abs(".")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", script)
		cmd.Dir = t.TempDir()
		cmd.Env = append(os.Environ(), "LWT="+repo)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("the vendoring guide failed: %v\n%s", err, out)
		}
		want := readmeBlock(t, "It prints:", "")
		if !strings.HasSuffix(string(out), want) {
			t.Fatalf("the example printed\n%s\nthe README says\n%s", out, want)
		}

		// The same project with its executable in bin/, as the README's
		// subsection says.
		app := filepath.Join(cmd.Dir, "myapp")
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		must(os.RemoveAll(filepath.Join(app, "_build")))
		must(os.Mkdir(filepath.Join(app, "bin"), 0o755))
		must(os.Rename(filepath.Join(app, "main.ml"), filepath.Join(app, "bin", "main.ml")))
		must(os.WriteFile(filepath.Join(app, "dune"), []byte("(vendored_dirs lwt)\n"), 0o644))
		must(os.WriteFile(filepath.Join(app, "bin", "dune"), []byte(readmeBlock(t, "### An executable in a subfolder", "dune")), 0o644))
		bin := exec.CommandContext(ctx, "bash", "-euo", "pipefail", "-c", "dune build ./bin/main.exe && ./_build/default/bin/main.exe")
		bin.Dir = app
		if out, err = bin.CombinedOutput(); err != nil {
			t.Fatalf("the bin/ layout failed: %v\n%s", err, out)
		}
		if !strings.HasSuffix(string(out), want) {
			t.Fatalf("the bin/ layout printed\n%s\nthe README says\n%s", out, want)
		}
	})
}

// endToEndCases are the cases of test/cases.ml, each run in a process of its
// own: each must print "ok", but those whose documented outcome is the end
// of the process, which must end with crash in their output.
// endToEndCase is a case of test/cases.ml or test/ocaml5.ml; noRace leaves
// it out of the race detector's run.
type endToEndCase struct {
	name, crash string
	noRace      bool
}

var endToEndCases = []endToEndCase{
	{name: "stack_overflow_heap"},
	{name: "error_chain"},
	{name: "wake_off_thread"},
	{name: "goexit_goroutine"},
	{name: "goexit_task", crash: "fatal error: runtime.Goexit called in a thread that was not created by the Go runtime"},
	{name: "goexit_sync", crash: "fatal error: runtime.Goexit called in a thread that was not created by the Go runtime"},
	{name: "deadlines"},
	{name: "alloc_failure", noRace: true}, // the detector needs more address space than the cap leaves
	{name: "dropped_handles"},
	{name: "fork"},
	{name: "nested_run"},
	{name: "register_off_thread"},
	{name: "lwt_thread_ended"},
	{name: "signal_in_grace"},
	{name: "nul_in_exception"},
	{name: "cancel_off_thread"},
	{name: "shutdown_in_callback"},
	{name: "run_bracket"},
	{name: "idle_cost"},
	{name: "signals_both"},
	{name: "promise_kinds"},
	{name: "timer_slack"},
}

// ocaml5Cases are the cases of test/ocaml5.ml, run on OCaml 5 only.
var ocaml5Cases = []endToEndCase{
	{name: "other_domain"},
	{name: "bridge_in_domain"},
	{name: "allocating_domain"},
	{name: "nil_dereference"},
	{name: "domain_in_grace"},
}

// raceEnv is the environment of a program whose Go archive was built with
// -race: the first race ends it (exit status 66) with the detector's
// report. By default Go reports a race and goes on, and a C program's exit
// status does not count the races, so a race would pass unseen.
var raceEnv = append(os.Environ(), "GORACE=halt_on_error=1")

func runCases(t *testing.T, exe string, cases []endToEndCase, race bool) {
	listed, err := exec.Command(exe, "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range cases {
		names = append(names, c.name)
	}
	if got := strings.Fields(string(listed)); strings.Join(got, " ") != strings.Join(names, " ") {
		t.Fatalf("%s has the cases %v, this table %v", exe, got, names)
	}
	for _, c := range cases {
		if race && c.noRace {
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, exe, c.name)
			if race {
				cmd.Env = raceEnv
			}
			out, err := cmd.CombinedOutput()
			switch {
			case ctx.Err() != nil:
				t.Fatalf("hung:\n%s", out)
			case c.crash == "" && err != nil:
				t.Fatalf("%v\n%s", err, out)
			case c.crash == "" && !strings.Contains(string(out), "ok"):
				t.Fatalf("no ok:\n%s", out)
			case c.crash != "" && (err == nil || !strings.Contains(string(out), c.crash)):
				t.Fatalf("want the process to end with %q, got %v:\n%.2000s", c.crash, err, out)
			}
			t.Logf("%.300s", out)
		})
	}
}

// offThreadCoverage says, for each external of lwt_interop.ml, what happens
// when it runs on a thread other than the Lwt thread (or in a child after
// fork), and which test shows it: a new external must say too.
var offThreadCoverage = map[string]string{
	"lwt_interop_init":          "Failure: already initialised on another thread (test_lwt_interop: other thread)",
	"lwt_interop_shutdown":      "Failure naming it (test_lwt_interop: other thread)",
	"lwt_interop_run_pending":   "Failure: Lwt_main.run on another thread (test_lwt_interop: other thread)",
	"lwt_interop_lookup":        "Failure naming bind (test_lwt_interop: other thread)",
	"lwt_interop_call":          "Failure naming call (test_lwt_interop: other thread)",
	"lwt_interop_call_sync":     "Failure naming call (test_lwt_interop: other thread)",
	"lwt_interop_cancel":        "posted to the Lwt thread (cases: cancel_off_thread)",
	"lwt_interop_resolve":       "Go's call fails clearly (cases: wake_off_thread)",
	"lwt_interop_reject":        "Go's call fails clearly (cases: wake_off_thread)",
	"lwt_interop_go_stats":      "any thread (test_lwt_interop: other thread)",
	"lwt_interop_on_lwt_thread": "any thread",
	"lwt_interop_forked":        "any thread",
}

// TestEveryExternalHasAThreadRule checks that offThreadCoverage lists every
// external of lwt_interop.ml, and that every Go export is reached only
// through stubs.c's externals or function table.
func TestEveryExternalHasAThreadRule(t *testing.T) {
	ml, err := os.ReadFile("lwt_interop.ml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?s)external [^=]*=\s*"(\w+)"`).FindAllStringSubmatch(string(ml), -1) {
		seen[m[1]] = true
		if _, ok := offThreadCoverage[m[1]]; !ok {
			t.Errorf("external %s: no thread rule in offThreadCoverage", m[1])
		}
	}
	for name := range offThreadCoverage {
		if !seen[name] {
			t.Errorf("offThreadCoverage lists %s, which lwt_interop.ml does not declare", name)
		}
	}
	stubs, err := os.ReadFile("stubs.c")
	if err != nil {
		t.Fatal(err)
	}
	export, err := os.ReadFile("export.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`//export (\w+)`).FindAllStringSubmatch(string(export), -1) {
		if !strings.Contains(string(stubs), m[1]+"(") {
			t.Errorf("Go export %s is not called by stubs.c", m[1])
		}
	}
}

// TestReadmeShowsTheExample checks that the README shows the example the
// vendoring guide builds, as it is.
func TestReadmeShowsTheExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for file, lang := range map[string]string{
		"examples/hello/main.ml": "ocaml", "examples/hello/go/main.go": "go", "examples/hello/dune": "dune",
	} {
		src, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(readme), "```"+lang+"\n"+string(src)+"```\n") {
			t.Errorf("README.md does not show %s as it is", file)
		}
	}
}

// readmeBlock returns the first fenced block with the given language (""
// for none) after the line that starts with marker in README.md.
func readmeBlock(t *testing.T, marker, lang string) string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(readme), "\n"+marker)
	if ok {
		_, after, ok = strings.Cut(after, "\n```"+lang+"\n")
	}
	block, _, closed := strings.Cut(after, "\n```\n")
	if !ok || !closed {
		t.Fatalf("README.md has no %q block after %q", lang, marker)
	}
	return block + "\n"
}

// Registration refuses, with the type or name in the message, what cannot
// work: a type that no OCaml type matches, a value held across the
// boundary inside another value, and a name used twice. (What OCaml's
// types must match is checked when OCaml binds: flat_test.go.)
func TestRegisterErrors(t *testing.T) {
	t.Cleanup(func() { forgetRegistered("test.twice") }) // go test -count=2 registers again
	noop := func(context.Context, chan int) (struct{}, error) { return struct{}{}, nil }
	for _, c := range []struct {
		err  error
		want string
	}{
		{Register("test.chan", noop), "lwt: registering \"test.chan\": argument: Go type chan int cannot cross to OCaml"},
		{Register("test.map", func(context.Context, map[string]int) (int, error) { return 0, nil }),
			"Go type map[string]int cannot cross"},
		{RegisterSync("test.uint", func(int) ([]uint64, error) { return nil, nil }), "Go type uint64 cannot cross"},
		{RegisterSync("test.time", func(struct{ T time.Time }) (int, error) { return 0, nil }),
			"field struct { T time.Time }.T: a time.Time crosses as its t.UnixNano()"},
		{RegisterSync("test.funcs", func([]*Func[int64, int64]) (struct{}, error) { return struct{}{}, nil }),
			"a *lwt.Func[int64,int64] crosses only as an argument or a result"},
		{RegisterSync("test.handles", func(struct{}) ([]Handle[int], error) { return nil, nil }),
			"a lwt.Handle[int] crosses only as an argument or a result"},
		{RegisterSync("test.twice", func(int64) (int64, error) { return 0, nil }), ""},
		{RegisterSync("test.twice", func(int64) (int64, error) { return 0, nil }), "lwt: a Go function is already registered as \"test.twice\""},
	} {
		if c.want == "" {
			if c.err != nil {
				t.Errorf("unexpected %v", c.err)
			}
		} else if c.err == nil || !strings.Contains(c.err.Error(), c.want) {
			t.Errorf("got %v, want %q", c.err, c.want)
		}
	}
}

// forgetRegistered drops name from the registry, for a test that registers
// it to run again. Its id stays taken.
func forgetRegistered(name string) {
	registry.mu.Lock()
	defer registry.mu.Unlock()
	delete(registry.byName, name)
}

// TestCallIDsFitOCamlInts: ids cross as OCaml ints (62 bits and a sign),
// however many calls were made before (the generation wraps).
func TestCallIDsFitOCamlInts(t *testing.T) {
	old := callGens.Load()
	defer callGens.Store(old)
	var out callTable
	var in inCallTable
	for _, gen := range []uint32{genMask - 1, genMask, 1<<31 + 5, 1<<32 - 1} {
		callGens.Store(gen)
		c := &outCall[int]{}
		id := out.reserve()
		if id < 0 || id >= 1<<62 || !out.keep(id, c) || out.take(id) != c {
			t.Errorf("out: after %d calls, id %d", gen, id)
		}
		in.gens = []uint32{gen}
		in.slots = []*inCall{nil}
		in.free = []int{0}
		ic := &inCall{}
		iid := in.add(ic)
		if iid < 0 || iid >= 1<<62 || in.get(iid) != ic {
			t.Errorf("in: after generation %d, id %d", gen, iid)
		}
	}
}

// A call's id is reserved before OCaml runs it and kept only if the call
// waits; one OCaml answered at once hands its id to the next call. Calls
// made meanwhile (nested) get ids of their own, and an id reserved across
// a shutdown (abandonAll) is no longer kept.
func TestCallTableReserve(t *testing.T) {
	var tab callTable
	a := tab.reserve()
	nested := tab.reserve()
	if nested == a {
		t.Fatalf("a nested call got its caller's id %d", a)
	}
	tab.unreserve(nested) // the nested call settled at once
	tab.unreserve(a)      // and so did its caller
	b := tab.reserve()
	if b != nested {
		t.Errorf("the next call got %#x, not the id handed back, %#x", b, nested)
	}
	const slotMask = 1<<slotBits - 1
	if c := tab.reserve(); c&slotMask != a&slotMask || c == a {
		t.Errorf("then %#x, not the freed slot of %#x with a new generation", c, a)
	}
	c := tab.reserve()
	wait := &outCall[int]{}
	if !tab.keep(b, wait) || tab.take(b) != wait || tab.inFlight.Load() != 0 {
		t.Errorf("a kept call is not in flight as its id")
	}
	if tab.take(c) != nil {
		t.Errorf("a reserved id is taken as if in flight")
	}
	tab.abandonAll(ErrClosed)
	if tab.keep(c, &outCall[int]{}) {
		t.Errorf("an id reserved before a shutdown was kept after it")
	}
	tab.unreserve(c)
	if tab.hasSpare {
		t.Errorf("an id reserved before a shutdown was handed to the next call")
	}
}

// onLoopThread's fast path (the running task's goroutine) answers as the
// C thread check does: true in a task, before and after it awaits, false in
// a goroutine the task starts and once no task runs.
func TestOnLoopThreadInTasks(t *testing.T) {
	startSim(t)
	type seen struct{ first, afterAwait, inGoroutine, fast bool }
	p := OnLoop(func() (*Promise[seen], error) {
		return Spawn(context.Background(), func(ctx context.Context) (seen, error) {
			var s seen
			s.first = onLoopThread()
			later, r := NewPromise[int]()
			go func() { time.Sleep(time.Millisecond); r.Resolve(1) }()
			if _, err := later.Await(ctx); err != nil { // suspends the task
				return s, err
			}
			s.afterAwait = onLoopThread()
			s.fast = getg.G() != 0 && current.Load().runningG.Load() == getg.G()
			other := make(chan bool)
			go func() { other <- onLoopThread() }()
			s.inGoroutine = <-other
			return s, nil
		}), nil
	})
	inner, err := p.Await(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	s, err := inner.Await(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantFast := runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64"
	if !s.first || !s.afterAwait || s.inGoroutine || s.fast != wantFast {
		t.Fatalf("in a task: %+v (fast path expected: %v)", s, wantFast)
	}
	// On the Lwt thread, after the step that finished the task.
	left, err := OnLoop(func() (uintptr, error) { return current.Load().runningG.Load(), nil }).Await(context.Background())
	if err != nil || left != 0 {
		t.Fatalf("runningG left set after the task: %#x, %v", left, err)
	}
}

// syncBuffer is a bytes.Buffer that one goroutine writes while another
// reads it (the watchdog's report, a server's stderr).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Found by a probe: bridges started on two threads at once both started,
// and one of them never stopped.
func TestRacingStartsStartOne(t *testing.T) {
	for range 20 {
		var wg sync.WaitGroup
		stops := make(chan func() error, 8)
		for range 8 {
			wg.Go(func() {
				if stop, err := Simulate(); err == nil {
					stops <- stop
				}
			})
		}
		wg.Wait()
		close(stops)
		started := 0
		for stop := range stops {
			started++
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		}
		if started != 1 {
			t.Fatalf("%d bridges started at once", started)
		}
	}
}

// Found by a probe: the stop of a simulated bridge already shut down shut
// down the bridge that had replaced it.
func TestStaleSimulateStopLeavesTheNextBridge(t *testing.T) {
	stopA, err := Simulate()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopA() })
	if err := Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := startSim(t)
	if err := stopA(); err != nil {
		t.Fatal(err)
	}
	if _, err := OnLoop(func() (int, error) { return 1, nil }).Await(context.Background()); err != nil {
		t.Fatalf("the next bridge, after the first one's stop: %v", err)
	}
	s.stop(t)
}

// Found by review: a Shutdown whose ctx does not give the grace period (a
// shutdown under way with another's) returns when its ctx ends; only the
// one whose ctx ended the grace period waits for the shutdown's end.
func TestShutdownDeadlineOfAnotherGracePeriod(t *testing.T) {
	s := startSim(t)
	s.l.inCalls.live.Add(1) // a call in flight: the grace period lasts
	first := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		first <- Shutdown(ctx)
	}()
	for stopping := false; !stopping; {
		v, err := OnLoop(func() (bool, error) { return s.l.stopping, nil }).Await(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		stopping = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the second Shutdown: %v, want its ctx's error", err)
	}
	s.l.inCalls.live.Add(-1)
	if err := <-first; err != nil {
		t.Errorf("the first Shutdown: %v", err)
	}
}
