package lwt

// Compute's admission, under the race detector.

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestComputeLeavesOneP(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	var running, most atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			_, err := Compute(context.Background(), func() (int, error) {
				n := running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(2 * time.Millisecond)
				running.Add(-1)
				return 0, nil
			})
			if err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if most.Load() != 3 {
		t.Fatalf("%d computations ran at once with GOMAXPROCS 4, want 3", most.Load())
	}
	if compute.running != 0 || len(compute.waiters) != 0 {
		t.Fatalf("left: %d running, %d waiting", compute.running, len(compute.waiters))
	}
}

func TestComputeWaitEndsWithContext(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2)) // one slot
	hold, release := make(chan struct{}), make(chan struct{})
	go Compute(context.Background(), func() (int, error) { close(hold); <-release; return 0, nil })
	<-hold
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	ran := false
	if _, err := Compute(ctx, func() (int, error) { ran = true; return 0, nil }); !errors.Is(err, context.DeadlineExceeded) || ran {
		t.Fatalf("a wait past its deadline: %v (ran %v)", err, ran)
	}
	close(release)
	boom := errors.New("boom")
	if _, err := Compute(context.Background(), func() (int, error) { return 0, boom }); err != boom {
		t.Fatalf("fn's error: %v", err)
	}
	func() {
		defer func() { recover() }()
		Compute(context.Background(), func() (int, error) { panic("in fn") })
	}()
	if v, err := Compute(context.Background(), func() (int, error) { return 7, nil }); v != 7 || err != nil {
		t.Fatalf("after a panic: %d, %v (its slot was not freed?)", v, err)
	}
}

func TestComputeRefusesTheLwtThread(t *testing.T) {
	stop, err := Simulate()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	v, err := OnLoop(func() (error, error) {
		_, err := Compute(context.Background(), func() (int, error) { return 0, nil })
		return err, nil
	}).Await(context.Background())
	if !errors.Is(v, ErrWouldBlock) || err != nil {
		t.Fatalf("Compute on the Lwt thread: %v, %v", v, err)
	}
}

// Raising GOMAXPROCS lets more computations run at once, queued ones too.
func TestComputeFollowsGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2)) // one slot
	release := make(chan struct{})
	var running, most atomic.Int64
	var wg sync.WaitGroup
	work := func() (int, error) {
		n := running.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		<-release
		running.Add(-1)
		return 0, nil
	}
	for range 7 {
		wg.Go(func() { Compute(context.Background(), work) })
	}
	for running.Load() != 1 {
		time.Sleep(time.Millisecond)
	}
	runtime.GOMAXPROCS(8) // seven slots
	release <- struct{}{} // the first ends: the six queued may all run
	deadline := time.Now().Add(10 * time.Second)
	for running.Load() != 6 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if most.Load() != 6 {
		t.Fatalf("at most %d ran at once after GOMAXPROCS went to 8, want 6", most.Load())
	}
}
