package main

// The Go side of test/streams.ml: streams each way, their end, errors,
// backpressure and stop.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"lwt"
)

// The last producer of streams.ints: how many values it sent, and why it
// ended ("" while it runs).
var producer struct {
	sync.Mutex
	sent int
	end  string
}

func resetProducer() {
	producer.Lock()
	producer.sent, producer.end = 0, ""
	producer.Unlock()
}

func endProducer(err error) {
	producer.Lock()
	producer.end = fmt.Sprint(err)
	producer.Unlock()
}

func init() {
	// n values (or forever, for n < 0), from a buffer of capacity.
	lwt.MustRegister("streams.ints", lwt.Fn2(func(_ context.Context, n, capacity int) (*lwt.Stream[int], error) {
		s, w := lwt.NewStream[int](capacity)
		resetProducer()
		go func() {
			err := error(nil)
			for i := 0; i != n && err == nil; i++ {
				if err = w.Send(context.Background(), i); err == nil {
					producer.Lock()
					producer.sent++
					producer.Unlock()
				}
			}
			w.Close(nil)
			endProducer(err)
		}()
		return s, nil
	}))
	lwt.MustRegisterSync("streams.producer", func(struct{}) (lwt.Pair[int, string], error) {
		producer.Lock()
		defer producer.Unlock()
		return lwt.Pair[int, string]{First: producer.sent, Second: producer.end}, nil
	})
	// n strings, then the error registered as not_found (or a plain one).
	lwt.MustRegister("streams.failing", lwt.Fn2(func(_ context.Context, n int, registered bool) (*lwt.Stream[string], error) {
		err := errors.New("the disk is on fire")
		if registered {
			err = fmt.Errorf("looking up: %w", errNotFound)
		}
		return lwt.StreamOf(2, func(yield func(string, error) bool) {
			for i := range n {
				if !yield(fmt.Sprint(i), nil) {
					return
				}
			}
			yield("", err)
		}), nil
	}))
	// One value, then an error whose Is method panics.
	lwt.MustRegister("streams.bad_error", func(_ context.Context, _ struct{}) (*lwt.Stream[int], error) {
		return lwt.StreamOf(1, func(yield func(int, error) bool) {
			if yield(1, nil) {
				yield(0, badError("Is"))
			}
		}), nil
	})
	lwt.MustRegister("streams.panicking", func(_ context.Context, _ struct{}) (*lwt.Stream[int], error) {
		return lwt.StreamOf(1, func(yield func(int, error) bool) {
			yield(1, nil)
			panic("the producer panicked")
		}), nil
	})

	// OCaml's stream read by a goroutine, and by a loop task.
	sum := func(ctx context.Context, s *lwt.Stream[int]) (int, error) {
		total := 0
		for v, err := range s.All(ctx) {
			if err != nil {
				return total, err
			}
			total += v
		}
		return total, nil
	}
	lwt.MustRegister("streams.sum", sum)
	lwt.MustRegisterTask("streams.sum_task", sum)
	// The first n values, then Close.
	lwt.MustRegister("streams.take", lwt.Fn2(func(ctx context.Context, s *lwt.Stream[string], n int) ([]string, error) {
		var got []string
		for v, err := range s.All(ctx) {
			if err != nil {
				return got, err
			}
			if got = append(got, v); len(got) == n {
				break // All closes the stream
			}
		}
		return got, nil
	}))
	// What a reader sees of a stream that fails: its values, then the error.
	lwt.MustRegister("streams.read_all", func(ctx context.Context, s *lwt.Stream[string]) (lwt.Pair[[]string, string], error) {
		var r lwt.Pair[[]string, string]
		for {
			v, err := s.Recv(ctx)
			if err != nil {
				var oe *lwt.OCamlError
				if errors.As(err, &oe) {
					r.Second = "OCamlError " + oe.Name + ": " + err.Error()
				} else {
					r.Second = err.Error()
				}
				return r, nil
			}
			r.First = append(r.First, v)
		}
	})
	// A stream of users from OCaml, each changed, back to OCaml: a Go stage
	// of an OCaml pipeline.
	lwt.MustRegister("streams.rename", func(ctx context.Context, in *lwt.Stream[User]) (*lwt.Stream[User], error) {
		return lwt.StreamOf(4, func(yield func(User, error) bool) {
			defer in.Close()
			for u, err := range in.All(context.Background()) {
				u.Name = "renamed " + u.Name
				if !yield(u, err) || err != nil {
					return
				}
			}
		}), nil
	})
	// A stream passed back unread: Go hands OCaml's stream to OCaml.
	lwt.MustRegisterSync("streams.identity", func(s *lwt.Stream[int]) (*lwt.Stream[int], error) { return s, nil })
	// A producer already waiting in Send when the stream crosses (shutdown
	// must still stop it), and one that sends after ms milliseconds, or
	// stops when the reader does.
	lwt.MustRegister("streams.blocked", func(context.Context, struct{}) (*lwt.Stream[int], error) {
		s, w := lwt.NewStream[int](1)
		resetProducer()
		sent := make(chan struct{})
		go func() {
			err := w.Send(context.Background(), 0)
			close(sent)
			if err == nil {
				err = w.Send(context.Background(), 1)
			}
			endProducer(err)
		}()
		<-sent
		time.Sleep(20 * time.Millisecond) // in its second Send
		return s, nil
	})
	lwt.MustRegister("streams.late", func(_ context.Context, ms int) (*lwt.Stream[int], error) {
		s, w := lwt.NewStream[int](1)
		resetProducer()
		go func() {
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
				w.Send(context.Background(), 1)
				w.Send(context.Background(), 2)
				w.Close(nil)
				endProducer(nil)
			case <-w.Done():
				endProducer(errors.New("stopped by the reader"))
			}
		}()
		return s, nil
	})
	// Recv where it cannot wait: in a sync function, on the Lwt thread.
	lwt.MustRegisterSync("streams.recv_sync", func(s *lwt.Stream[int]) (string, error) {
		_, err := s.Recv(context.Background())
		s.Close()
		return fmt.Sprint(err), nil
	})

	// A value past OCaml's 63-bit ints among others that fit.
	lwt.MustRegister("streams.overflow", func(context.Context, struct{}) (*lwt.Stream[int], error) {
		s, w := lwt.NewStream[int](8)
		for _, v := range []int{1, 2, 1 << 62, 4} {
			w.Send(context.Background(), v)
		}
		w.Close(nil)
		return s, nil
	})

	// The same stream each call: crossing a second time is refused.
	once, w := lwt.NewStream[int](1)
	w.Close(nil)
	lwt.MustRegisterSync("streams.once", func(struct{}) (*lwt.Stream[int], error) { return once, nil })
}
