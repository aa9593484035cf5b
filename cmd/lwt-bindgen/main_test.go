package main

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

// TestBindingsAreCurrent regenerates test/go_bindings.ml, which the
// end-to-end suite compiles and calls, and fails if the file in the tree
// differs: run go generate in test/gomain.
func TestBindingsAreCurrent(t *testing.T) {
	pkg, files, err := load("../../test/gomain")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := generate(&buf, pkg, files, "Lwt_interop"); err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("../../test/go_bindings.ml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(have, buf.Bytes()) {
		cmd := exec.Command("diff", "-u", "../../test/go_bindings.ml", "-")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		diff, _ := cmd.CombinedOutput()
		t.Fatalf("test/go_bindings.ml is not current: run go generate in test/gomain\n%s", diff)
	}
}

func TestIdent(t *testing.T) {
	for in, want := range map[string]string{
		"UserID": "user_id", "HTTPServer": "http_server", "greet_all": "greet_all", "bench.echo.task": "bench_echo_task",
		"Type": "type_", "9lives": "f_9lives", "X": "x", "utf8Len": "utf8_len",
	} {
		if got := ident(in); got != want {
			t.Errorf("ident(%q) = %q, want %q", in, got, want)
		}
	}
}
