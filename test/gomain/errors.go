package main

// The Go side of the typed-errors tests (test_lwt_interop.ml's
// test_typed_errors and test_errors_whose_methods_panic).

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"lwt"
)

var errNotFound = errors.New("not found")

func init() {
	lwt.MustRegisterError("not_found", errNotFound)
	lwt.MustRegisterSync("errors.not_found", func(wrap bool) (unit, error) {
		if wrap {
			return unit{}, fmt.Errorf("looking it up: %w", errNotFound)
		}
		return unit{}, errNotFound
	})
	lwt.MustRegisterSync("errors.open", func(path string) (unit, error) {
		_, err := os.Open(path)
		return unit{}, err
	})
	lwt.MustRegister("errors.canceled", func(context.Context, unit) (unit, error) { return unit{}, context.Canceled })
	// What Go sees of each exception that f raises.
	lwt.MustRegisterTask("errors.classify", func(ctx context.Context, f *lwt.Func[string, unit]) (string, error) {
		defer f.Release()
		var out []string
		for _, what := range []string{"not_found", "failure", "canceled", "closed", "go_error"} {
			_, err := f.Call(ctx, what)
			var oe *lwt.OCamlError
			if !errors.As(err, &oe) {
				return "", fmt.Errorf("%s: not an *OCamlError: %v", what, err)
			}
			out = append(out, fmt.Sprintf("%s: %s %q not_found=%v canceled=%v closed=%v error=%q", what, oe.Name, oe.Args,
				errors.Is(err, errNotFound), errors.Is(err, context.Canceled), errors.Is(err, lwt.ErrClosed), err))
		}
		return strings.Join(out, "\n"), nil
	})
	// Returns f's error as its own: a Go error that went through OCaml.
	lwt.MustRegisterTask("errors.pass_through", func(ctx context.Context, f *lwt.Func[string, unit]) (unit, error) {
		defer f.Release()
		return f.Call(ctx, "/nonexistent/file")
	})
	// Errors whose own methods panic, from each kind of function, a Go
	// promise rejected later, and a Go callback.
	lwt.MustRegister("errors.bad_method", func(_ context.Context, method string) (unit, error) { return unit{}, badError(method) })
	lwt.MustRegisterTask("errors.bad_method_task", func(_ context.Context, method string) (unit, error) { return unit{}, badError(method) })
	lwt.MustRegisterSync("errors.bad_method_sync", func(method string) (unit, error) { return unit{}, badError(method) })
	lwt.MustRegister("errors.bad_method_at_shutdown", func(ctx context.Context, method string) (unit, error) {
		<-ctx.Done()
		return unit{}, badError(method)
	})
	lwt.MustRegisterSync("errors.bad_method_later", func(method string) (*lwt.Promise[unit], error) {
		p, r := lwt.NewPromise[unit]()
		time.AfterFunc(time.Millisecond, func() { r.Reject(badError(method)) })
		return p, nil
	})
	lwt.MustRegisterSync("errors.bad_method_callback", func(method string) (*lwt.Callback[unit, unit], error) {
		return lwt.NewCallback(func(context.Context, unit) (unit, error) { return unit{}, badError(method) }), nil
	})
}

// badError's method named by it panics.
type badError string

func (e badError) Error() string {
	if e == "Error" {
		panic("Error panics")
	}
	return "a bad error"
}

func (e badError) Is(error) bool {
	if e == "Is" {
		panic("Is panics")
	}
	return false
}
