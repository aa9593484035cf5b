// The Go half of the http-server example: what an OCaml cohttp server
// calls, one function of each kind.
package main

import "C" // a c-archive needs cgo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"lwt"
)

// errNotFound is OCaml's Not_found (Lwt_interop.register_exception): a 404.
var errNotFound = errors.New("not found")

func init() {
	lwt.MustRegisterError("not_found", errNotFound)

	// Real work in a goroutine: the SHA-256 of a request body that OCaml
	// streams to Go as it arrives, chunk by chunk.
	lwt.MustRegister("sha256", func(ctx context.Context, body *lwt.Stream[string]) (string, error) {
		h := sha256.New()
		for chunk, err := range body.All(ctx) {
			if err != nil {
				return "", err
			}
			h.Write([]byte(chunk))
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	})

	// A sync function: runs on the Lwt thread and returns at once.
	lwt.MustRegisterSync("add", lwt.SyncFn2(func(a, b int) (int, error) {
		if a < 0 || b < 0 {
			return 0, fmt.Errorf("add: negative operand (%d, %d)", a, b)
		}
		return a + b, nil
	}))

	// A loop task that awaits OCaml: the greeting of a user whose title an
	// OCaml Lwt function finds (Not_found for an unknown user).
	lwt.MustRegisterTask("greet", func(ctx context.Context, name string) (string, error) {
		title, err := lwt.Lookup[string, string]("title")
		if err != nil {
			return "", err
		}
		t, err := title.Call(ctx, name)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("hello, %s %s", t, name), nil
	})

	// A Go stream for the response body: n lines, produced as OCaml reads.
	lwt.MustRegister("lines", func(_ context.Context, n int) (*lwt.Stream[string], error) {
		return lwt.StreamOf(16, func(yield func(string, error) bool) {
			for i := range n {
				if !yield(fmt.Sprintf("line %d\n", i), nil) {
					return
				}
			}
		}), nil
	})
}

func main() {}
