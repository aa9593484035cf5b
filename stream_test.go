package lwt

// Streams between goroutines, under the race detector: order, the bound
// on the buffer, end, errors and stops. test/streams.ml covers the
// crossings to and from OCaml.

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestStreamOrderAndBound(t *testing.T) {
	const n, capacity = 10000, 4
	s, w := NewStream[int](capacity)
	var sent atomic.Int64
	go func() {
		for i := range n {
			if err := w.Send(context.Background(), i); err != nil {
				t.Errorf("Send: %v", err)
				return
			}
			sent.Add(1)
		}
		w.Close(nil)
	}()
	for i := range n {
		if i%1000 == 0 {
			time.Sleep(time.Millisecond) // the producer fills the buffer
			if ahead := sent.Load() - int64(i); ahead > capacity {
				t.Fatalf("the producer is %d values ahead of the reader, past the capacity %d", ahead, capacity)
			}
		}
		v, err := s.Recv(context.Background())
		if err != nil || v != i {
			t.Fatalf("Recv = %d, %v; want %d", v, err, i)
		}
	}
	if _, err := s.Recv(context.Background()); err != io.EOF {
		t.Fatalf("after the last value: %v, want io.EOF", err)
	}
}

func TestStreamErrorAfterValues(t *testing.T) {
	boom := errors.New("boom")
	s := StreamOf(2, func(yield func(string, error) bool) {
		_ = yield("a", nil) && yield("b", nil) && yield("", boom)
	})
	var got []string
	var last error
	for v, err := range s.All(context.Background()) {
		if err != nil {
			last = err
			break
		}
		got = append(got, v)
	}
	if strings.Join(got, ",") != "a,b" || last != boom {
		t.Fatalf("got %v then %v; want a,b then boom", got, last)
	}
}

func TestStreamOfPanics(t *testing.T) {
	s := StreamOf(1, func(yield func(int, error) bool) { panic("producer") })
	var pe *PanicError
	if _, err := s.Recv(context.Background()); !errors.As(err, &pe) || pe.Value != "producer" {
		t.Fatalf("Recv = %v, want the producer's panic", err)
	}
}

// Leaving a range over All stops the stream: the producer's yield returns
// false, and a Sender's Send returns ErrStreamStopped.
func TestStreamStopByReader(t *testing.T) {
	stopped := make(chan int)
	s := StreamOf(1, func(yield func(int, error) bool) {
		i := 0
		for yield(i, nil) {
			i++
		}
		stopped <- i
	})
	for v := range s.All(context.Background()) {
		if v == 10 {
			break
		}
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("the producer still runs after the reader left")
	}

	s2, w := NewStream[int](1)
	errc := make(chan error)
	go func() {
		for {
			if err := w.Send(context.Background(), 1); err != nil {
				errc <- err
				return
			}
		}
	}()
	time.Sleep(time.Millisecond)
	s2.Close()
	if err := <-errc; err != ErrStreamStopped {
		t.Fatalf("Send after Close = %v, want ErrStreamStopped", err)
	}
	if _, err := s2.Recv(context.Background()); err != ErrStreamStopped {
		t.Fatalf("Recv after Close = %v, want ErrStreamStopped", err)
	}
}

func TestStreamContexts(t *testing.T) {
	s, w := NewStream[int](1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := s.Recv(ctx); err != context.DeadlineExceeded {
		t.Fatalf("Recv of an empty stream = %v, want its ctx's error", err)
	}
	if err := w.Send(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if err := w.Send(ctx, 2); err != context.DeadlineExceeded {
		t.Fatalf("Send to a full stream = %v, want its ctx's error", err)
	}
	if !w.Close(nil) || w.Close(errors.New("late")) {
		t.Fatal("Close reports true the first time only")
	}
	if err := w.Send(context.Background(), 3); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Fatalf("Send after Close = %v", err)
	}
	if v, err := s.Recv(context.Background()); v != 1 || err != nil {
		t.Fatalf("the value sent before Close: %d, %v", v, err)
	}
}

// Close wakes a reader waiting for a value, and a producer waiting on
// Done.
func TestStreamCloseWakesWaiters(t *testing.T) {
	s, w := NewStream[int](1)
	errc := make(chan error)
	go func() {
		_, err := s.Recv(context.Background())
		errc <- err
	}()
	time.Sleep(time.Millisecond)
	s.Close()
	select {
	case err := <-errc:
		if err != ErrStreamStopped {
			t.Fatalf("Recv waiting when the stream was closed: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Recv still waits after Close")
	}
	select {
	case <-w.Done():
	default:
		t.Fatal("Done not closed by Close")
	}
}

// However far the producer is ahead, the buffer holds capacity values.
func TestStreamBufferStaysBounded(t *testing.T) {
	const capacity = 4
	s, w := NewStream[int](capacity)
	go func() {
		for i := range 20000 {
			w.Send(context.Background(), i)
		}
		w.Close(nil)
	}()
	for i := 0; ; i++ {
		v, err := s.Recv(context.Background())
		if err == io.EOF {
			break
		}
		if err != nil || v != i {
			t.Fatalf("Recv = %d, %v; want %d", v, err, i)
		}
		s.mu.Lock()
		n := len(s.ring)
		s.mu.Unlock()
		if n > capacity {
			t.Fatalf("the buffer holds %d slots, for a capacity of %d", n, capacity)
		}
	}
}
