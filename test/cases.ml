(* One scenario per process: `cases.exe NAME` runs case NAME and prints
   "ok: ..." (exit 0), or fails. TestEndToEnd/cases runs each case in a
   process of its own, with a time limit, and checks what it printed or, for
   the cases whose documented outcome is the end of the process, how it
   ended. Real OCaml + Lwt + the Go archive (test/gomain). *)

open Lwt.Infix
module I = Lwt_interop

let fail fmt = Printf.ksprintf failwith fmt
let run = Lwt_main.run
let contains s sub = Astring.String.is_infix ~affix:sub s

let go_error_of f =
  match f () with
  | _ -> fail "no exception"
  | exception I.Go_error { message = m; _ } -> m
  | exception e -> fail "want Go_error, got %s" (Printexc.to_string e)

(* Nothing in flight, once the jobs already posted have run (a goroutine's
   deadline posts the cancel of its call into OCaml): waits up to 2 s. *)
let check_calls_back_to_zero () =
  let rec settle n =
    let s = I.stats () in
    if (s.calls = 0 && s.tasks = 0) || n = 0 then Lwt.return s
    else Lwt_unix.sleep 0.01 >>= fun () -> settle (n - 1)
  in
  let s = run (settle 200) in
  if s.calls <> 0 || s.tasks <> 0 then fail "stats after: calls=%d tasks=%d" s.calls s.tasks

let add1 () = I.bind_sync "test.add1" I.Ty.int I.Ty.int

(* Still working, and nothing held: the end of every case. *)
let bridge_works () =
  if add1 () 41 <> 42 then fail "add1";
  let echo = I.bind "test.echo" I.Ty.string I.Ty.string in
  if run (echo "still") <> "still" then fail "echo";
  check_calls_back_to_zero ();
  I.shutdown ()

let rec deep n = if n = 0 then 0 else 1 + deep (n - 1)

(* Deep enough to overflow on each version: OCaml 5's stack limit is
   OCAMLRUNPARAM's l (1 GiB by default), not the system stack. *)
let overflow () =
  match deep (Sys.opaque_identity 1_000_000_000_000) with
  | _ -> fail "no Stack_overflow"
  | exception Stack_overflow -> ()

(* Values allocated since OCaml last called C survive a Stack_overflow (OCaml
   4.10-4.13 lost them: the allocation pointer came back stale), twice, with
   a Go fault recovered between. *)
let stack_overflow_heap () =
  I.init ();
  let live = List.init 100 (fun i -> (Some (ref i), string_of_int i)) in
  overflow ();
  (match run (I.bind "test.nil_task" I.Ty.unit I.Ty.int ()) with
  | _ -> fail "nil dereference returned"
  | exception I.Go_error _ -> ());
  let more = Array.init 1000 (fun i -> Some i) in
  overflow ();
  let again = Array.init 1000 (fun i -> [ i ]) in
  Gc.full_major ();
  List.iteri
    (fun i (r, s) ->
      match r with
      | Some r when !r = i && s = string_of_int i -> ()
      | _ -> fail "value %d changed" i)
    live;
  Array.iteri (fun i x -> if x <> Some i then fail "more %d" i) more;
  Array.iteri (fun i x -> if x <> [ i ] then fail "again %d" i) again;
  bridge_works ();
  print_endline "ok: the heap survives two stack overflows"

(* OCaml -> Go -> OCaml ... n deep, failing at the bottom: the error's text
   does not grow with the depth. *)
let error_chain () =
  let go_chain = lazy (I.bind_sync "cases.go_chain" I.Ty.int I.Ty.int) in
  let bottom = ref (fun () -> failwith "the bottom") in
  I.register_sync "cases.chain" I.Ty.int I.Ty.int (fun n ->
      if n = 0 then !bottom () else Lazy.force go_chain (n - 1));
  I.init ();
  let text n = go_error_of (fun () -> Lazy.force go_chain n) in
  let t1 = text 1 and t24 = text 24 in
  if String.length t24 > String.length t1 then
    fail "the text grew from %d to %d bytes over 24 crossings" (String.length t1) (String.length t24);
  if not (contains t24 "the bottom") then fail "lost the cause: %s" t24;
  bottom := (fun () -> deep (Sys.opaque_identity 1_000_000_000_000));
  let so = text 20 in
  if not (contains so "Stack overflow") then fail "want Stack_overflow, got %s" so;
  bridge_works ();
  Printf.printf "ok: %d and %d bytes at depth 1 and 24; a Stack_overflow at depth 20: %s\n" (String.length t1)
    (String.length t24) so

(* An OCaml promise that Go awaits, woken by another thread: Go's call fails
   with a clear error, nothing crashes. *)
let wake_off_thread () =
  I.register "cases.woken_by_thread" I.Ty.int I.Ty.int (fun n ->
      let p, u = Lwt.wait () in
      ignore (Thread.create (fun () -> Lwt.wakeup u n) ());
      p);
  I.init ();
  List.iter
    (fun kind ->
      let call = I.bind ("cases.call_" ^ kind) I.Ty.string I.Ty.string in
      let r = run (call "cases.woken_by_thread") in
      if not (contains r "settled on a thread that is not the Lwt thread") then fail "%s: %s" kind r)
    [ "task"; "goroutine" ];
  bridge_works ();
  print_endline "ok: both kinds of call fail clearly"

let goexit kind () =
  I.init ();
  let f = I.bind ("cases.goexit_" ^ kind) I.Ty.unit I.Ty.unit in
  let m = go_error_of (fun () -> run (f ())) in
  if not (contains m "runtime.Goexit") then fail "%s" m;
  bridge_works ();
  print_endline "ok: Goexit rejects the call"

(* 2,000 calls under a 1 ms deadline of a promise that never settles and
   ignores Lwt.cancel: no call stays in flight. *)
let deadlines () =
  I.register "cases.never" I.Ty.unit I.Ty.unit (fun () -> fst (Lwt.wait ()));
  I.init ();
  let n = 2000 in
  let timed_out = run (I.bind "cases.deadlines" I.Ty.int I.Ty.int n) in
  if timed_out <> n then fail "%d of %d timed out" timed_out n;
  bridge_works ();
  print_endline "ok: no call slot leaks"

(* With the address space capped, values and errors too large for OCaml's
   heap come back as errors: no OCaml exception crosses Go's frames, and the
   bridge goes on working. *)
let alloc_failure () =
  I.register "cases.length" I.Ty.string I.Ty.int (fun s -> Lwt.return (String.length s));
  I.init ();
  let mib = 700 in
  I.bind_sync "cases.prepare_big" I.Ty.int I.Ty.unit mib;
  let cap = I.bind_sync "cases.cap_address_space" I.Ty.int I.Ty.unit in
  (* Each check: room for what Go needs (its copy of a list), not for OCaml. *)
  let oom what ?(go_needs = 0) f =
    cap (go_needs + 200);
    let m = match f () with r -> r | exception e -> cap (-1); raise e in
    cap (-1);
    if not (contains m "Out_of_memory") then fail "%s: %s" what m
  in
  let go_error f () = go_error_of f in
  oom "string" (go_error (fun () -> I.bind_sync "cases.big_string" I.Ty.int I.Ty.string mib));
  oom "bytes" (go_error (fun () -> I.bind_sync "cases.big_bytes" I.Ty.int I.Ty.bytes mib));
  oom "in a list" ~go_needs:300
    (go_error (fun () -> I.bind_sync "cases.big_in_list" I.Ty.int I.Ty.(list (option string)) 300));
  oom "error" (go_error (fun () -> run (I.bind "cases.big_error" I.Ty.int I.Ty.unit mib)));
  oom "argument" (fun () -> run (I.bind "cases.big_argument" I.Ty.int I.Ty.string mib));
  bridge_works ();
  print_endline "ok: every allocation failure is an error"

let rss_mib () =
  let ic = open_in "/proc/self/statm" in
  let pages = Scanf.sscanf (input_line ic) "%d %d" (fun _ rss -> rss) in
  close_in ic;
  pages * 4096 / 1048576

(* 1,000 handles of 1 MiB of Go memory each, dropped, with no explicit GC:
   OCaml's GC learns their size and frees them as it goes. *)
let dropped_handles () =
  I.init ();
  let big_handle = I.bind_sync "cases.big_handle" I.Ty.unit I.Ty.handle in
  let before = rss_mib () in
  for _ = 1 to 1000 do
    ignore (Sys.opaque_identity (big_handle ()))
  done;
  let live = (I.stats ()).handles and growth = rss_mib () - before in
  Printf.printf "handles live: %d, RSS growth: %d MiB\n" live growth;
  if live > 500 then fail "%d of 1000 dropped handles still live" live;
  bridge_works ();
  print_endline "ok: dropped handles are collected"

(* After fork, the child gets a clear error from every call and shutdown
   returns; the parent goes on. *)
let fork () =
  let wait_ok what child =
    match Unix.waitpid [] child with
    | _, Unix.WEXITED 0 -> ()
    | _, Unix.WEXITED n -> fail "%s: exit %d" what n
    | _ -> fail "%s: killed" what
  in
  (* Forked before init: Go's runtime is just as gone. *)
  (match Unix.fork () with
  | 0 -> Unix._exit (match I.init () with () -> 1 | exception Failure m when contains m "fork" -> 0)
  | child -> wait_ok "a child forked before init" child);
  I.init ();
  let echo = I.bind "test.echo" I.Ty.string I.Ty.string in
  ignore (run (echo "before"));
  let handles = ref (List.init 100 (fun i -> I.bind_sync "test.new_counter" I.Ty.int I.Ty.handle i)) in
  match Unix.fork () with
  | 0 ->
      (* The child's GC finalises Go handles: it must not call Go. *)
      handles := [];
      Gc.full_major ();
      let code =
        match add1 () 1 with
        | _ -> 1
        | exception Failure m when contains m "fork" -> (
            match echo "child" with
            | p -> (
                match Lwt.state p with
                | Lwt.Fail (Failure m) when contains m "fork" ->
                    run (Lwt_unix.sleep 0.05);
                    I.shutdown ();
                    if (I.stats ()).calls = 0 then 0 else 3
                | _ -> 4)
            | exception Failure _ -> 5)
        | exception _ -> 2
      in
      Unix._exit code
  | child ->
      wait_ok "the child" child;
      ignore (Sys.opaque_identity !handles);
      if run (echo "parent") <> "parent" then fail "parent";
      bridge_works ();
      print_endline "ok: the child is refused clearly, the parent goes on"

(* Lwt_main.run inside OCaml code that Go called: a clear error. *)
let nested_run () =
  let echo = lazy (I.bind "test.echo" I.Ty.string I.Ty.string) in
  I.register_sync "cases.nested" I.Ty.int I.Ty.int (fun n ->
      String.length (run (Lazy.force echo (string_of_int n))));
  I.init ();
  let r = I.bind_sync "cases.call_sync" I.Ty.string I.Ty.string "cases.nested" in
  if not (contains r "Lwt_main.run inside OCaml code called by Go") then fail "%s" r;
  bridge_works ();
  print_endline "ok: a nested Lwt_main.run fails clearly"

(* Registrations from another thread fail and keep nothing, while the
   bridge runs and after its shutdown (it stays the Lwt thread's). *)
let register_off_thread () =
  I.init ();
  let f n = Lwt.return (n * 3) in
  let from_a_thread () =
    let accepted = ref [] in
    Thread.join
      (Thread.create
         (fun () ->
           List.iter
             (fun (what, register) ->
               match register () with
               | () -> accepted := what :: !accepted
               | exception Failure m when contains m "not the Lwt thread" -> ()
               | exception e -> accepted := (what ^ ": " ^ Printexc.to_string e) :: !accepted)
             [
               ("register", fun () -> I.register "cases.thrice" I.Ty.int I.Ty.int f);
               ("register_sync", fun () -> I.register_sync "cases.thrice" I.Ty.int I.Ty.int (fun n -> n * 3));
               ("register_fn", fun () -> I.register_fn "cases.thrice" I.Ty.(int @-> int @-> returning int) (fun a b -> Lwt.return (a * b)));
               ("register_exception", fun () -> I.register_exception "cases.thrice" Exit);
             ])
         ());
    if !accepted <> [] then fail "from another thread, accepted: %s" (String.concat ", " !accepted)
  in
  from_a_thread ();
  I.register "cases.thrice" I.Ty.int I.Ty.int f;
  let r = run (I.bind "cases.call_goroutine" I.Ty.string I.Ty.string "cases.thrice") in
  if r <> "21" then fail "Go's call: %s" r;
  bridge_works ();
  from_a_thread ();
  print_endline "ok"

exception Raw of string

(* The Lwt thread ended without shutdown: a thread made later is not the
   Lwt thread, though the C library may give it the ended one's pthread_t
   (a probe found that it passed for it, and its calls were accepted). *)
let lwt_thread_ended () =
  let add1 () = I.bind_sync "test.add1" I.Ty.int I.Ty.int in
  let on_lwt_thread = ref 0 in
  Thread.join (Thread.create (fun () -> I.init (); on_lwt_thread := add1 () 1) ());
  if !on_lwt_thread <> 2 then fail "add1 on the Lwt thread: %d" !on_lwt_thread;
  for _ = 1 to 4 do
    let outcome = ref "" in
    Thread.join
      (Thread.create
         (fun () -> outcome := match add1 () 1 with n -> string_of_int n | exception Failure m -> m)
         ());
    if not (contains !outcome "not the Lwt thread") then fail "a later thread: %s" !outcome
  done;
  (match I.init () with
  | _ -> fail "init on another thread did not fail"
  | exception Failure m when contains m "already initialised on another thread" -> ());
  print_endline "ok: a thread made after the Lwt thread ended is not the Lwt thread"

(* A signal whose OCaml handler raises, during shutdown's grace period: its
   exception must not unwind through Go's frames (found by review: it did,
   and the bridge stayed stuck in its shutdown, its call in flight pending).
   The handler runs at OCaml's next poll point: in OCaml code that Go calls
   (the rejection of the call in flight, perhaps), or after shutdown. *)
let signal_in_grace () =
  I.init ();
  let never = I.bind "test.never_stops" I.Ty.unit I.Ty.string in
  let p = never () in
  let old = Sys.signal Sys.sigalrm (Sys.Signal_handle (fun _ -> raise Exit)) in
  ignore (Unix.setitimer Unix.ITIMER_REAL { Unix.it_interval = 0.; it_value = 0.1 });
  (try I.shutdown ~grace:0.3 () with Exit -> ());
  Sys.set_signal Sys.sigalrm old;
  if Lwt.state p = Lwt.Sleep then fail "the shutdown did not end: the call in flight is pending";
  I.init ();
  bridge_works ();
  print_endline "ok: a signal handler's exception during the grace period stays in OCaml"

(* An exception's text keeps its NUL bytes, raised at once or later. *)
let nul_in_exception () =
  Printexc.register_printer (function Raw s -> Some s | _ -> None);
  I.register "cases.raises_now" I.Ty.int I.Ty.int (fun _ -> raise (Raw "a\000b"));
  I.register "cases.raises_later" I.Ty.int I.Ty.int (fun _ -> Lwt.pause () >>= fun () -> raise (Raw "a\000b"));
  I.init ();
  let call = I.bind "cases.call_task" I.Ty.string I.Ty.string in
  List.iter
    (fun f ->
      let r = run (call f) in
      if not (contains r "a\000b") then fail "%s: %S" f r)
    [ "cases.raises_now"; "cases.raises_later" ];
  bridge_works ();
  print_endline "ok"

(* Lwt.cancel of a Go call's promise from another thread cancels Go's
   context, and the process goes on. *)
let cancel_off_thread () =
  I.init ();
  let p = I.bind "cases.wait_cancel" I.Ty.unit I.Ty.string () in
  let t = Thread.create (fun () -> Lwt.cancel p) () in
  Thread.join t;
  (match Lwt.state p with Lwt.Fail Lwt.Canceled -> () | _ -> fail "not cancelled");
  run (Lwt_unix.sleep 0.05);
  bridge_works ();
  print_endline "ok"

(* shutdown from the callback of a promise that Go settled, after each kind
   of call. *)
let shutdown_in_callback () =
  List.iter
    (fun (kind, call) ->
      I.init ();
      run (call () >|= fun _ -> I.shutdown ());
      if (I.stats ()).calls <> 0 then fail "%s: calls left" kind)
    [
      ("goroutine", fun () -> I.bind "test.echo" I.Ty.string I.Ty.string "x" >|= ignore);
      ("task", fun () -> I.bind "rel.task_add1" I.Ty.int I.Ty.int 1 >|= ignore);
      ("sync", fun () -> I.bind "test.add1" I.Ty.int I.Ty.int 1 >|= ignore);
    ];
  print_endline "ok"

(* Lwt_interop.run: init, the program, shutdown, also when it fails; and
   again. *)
let run_bracket () =
  let add1 () = I.bind_sync "test.add1" I.Ty.int I.Ty.int in
  let v = I.run (fun () -> I.bind "test.echo" I.Ty.string I.Ty.string "in run") in
  if v <> "in run" then fail "run's result: %s" v;
  (match add1 () 1 with _ -> fail "the bridge still runs after run" | exception I.Closed -> ());
  (match I.run (fun () -> I.bind "test.fail" I.Ty.string I.Ty.unit "boom") with
  | () -> fail "a rejected promise returned"
  | exception I.Go_error { message = "boom"; _ } -> ()
  | exception e -> fail "run raised %s" (Printexc.to_string e));
  (match add1 () 1 with _ -> fail "the bridge runs after a failed run" | exception I.Closed -> ());
  (match I.run (fun () -> failwith "raised at once") with
  | () -> fail "no exception"
  | exception Failure _ -> ());
  let s = I.stats () in
  if s.roots + s.tasks + s.calls + s.jobs <> 0 then fail "held after run: %d roots, %d calls" s.roots s.calls;
  if I.run (fun () -> Lwt.return (add1 () 41)) <> 42 then fail "a third run";
  print_endline "ok: run brackets the program"

let ctx_switches () =
  let dir = "/proc/self/task" in
  Array.fold_left
    (fun acc tid ->
      let ic = open_in (Printf.sprintf "%s/%s/status" dir tid) in
      let rec sum acc =
        match input_line ic with
        | l -> (
            match Scanf.sscanf l "%s@:%_[ \t]%d" (fun k v -> (k, v)) with
            | ("voluntary_ctxt_switches" | "nonvoluntary_ctxt_switches"), v -> sum (acc + v)
            | _ -> sum acc
            | exception _ -> sum acc)
        | exception End_of_file -> acc
      in
      let n = sum 0 in
      close_in ic;
      acc + n)
    0 (Sys.readdir dir)

external cpu_ns : unit -> int = "cases_process_cpu_ns"

(* An idle bridge costs about nothing: over 5 s of Lwt sleeping, at most
   20 thread wake-ups per second and 1 ms of CPU per second. *)
let idle_cost () =
  I.init ();
  ignore (run (I.bind "test.echo" I.Ty.string I.Ty.string "warm"));
  run (Lwt_unix.sleep 1.);
  let secs = 5. in
  (* The process's CPU clock (test_stubs.c: no entry into Go, which would
     wake Go's threads) is read innermost: reading /proc costs CPU too. *)
  let w0 = ctx_switches () in
  let c0 = cpu_ns () in
  run (Lwt_unix.sleep secs);
  let c1 = cpu_ns () in
  let w1 = ctx_switches () in
  let wakeups = float (w1 - w0) /. secs and cpu_ms = float (c1 - c0) /. 1e6 /. secs in
  Printf.printf "idle: %.1f wake-ups/s, %.3f ms CPU/s\n" wakeups cpu_ms;
  if wakeups > 20. then fail "%.1f wake-ups per second" wakeups;
  if cpu_ms > 1. then fail "%.3f ms of CPU per second" cpu_ms;
  bridge_works ();
  print_endline "ok"

(* Every kind of OCaml promise that Go awaits (Lwt.task, Lwt.wait woken
   later, already settled, never settled, failed) x {Go's deadline,
   Lwt.cancel on the Lwt thread, Lwt.cancel from another thread}: each call
   ends as it should, and none stays in flight. *)
let promise_kinds () =
  let last = ref Lwt.return_unit in
  let kinds =
    [|
      ("Lwt.task", fun () -> let p, u = Lwt.task () in Lwt.async (fun () -> Lwt_unix.sleep 0.3 >|= fun () -> if Lwt.is_sleeping p then Lwt.wakeup u 1); p);
      ("Lwt.wait", fun () -> let p, u = Lwt.wait () in Lwt.async (fun () -> Lwt_unix.sleep 0.3 >|= fun () -> Lwt.wakeup u 2); p);
      ("settled", fun () -> Lwt.return 3);
      ("never", fun () -> fst (Lwt.wait ()));
      ("failed", fun () -> Lwt.fail Not_found);
    |]
  in
  let calls = ref 0 in
  I.register "cases.promise" I.Ty.int I.Ty.int (fun k ->
      let p = (snd kinds.(k)) () in
      last := Lwt.map ignore p;
      (* Lwt.cancel of !last reaches p *)
      incr calls;
      p);
  (* Until Go's call has reached OCaml: the promise to cancel is made. *)
  let rec called n = if !calls > n then Lwt.return_unit else Lwt_unix.sleep 0.001 >>= fun () -> called n in
  I.init ();
  let call_kind = I.bind "cases.call_kind" I.Ty.(pair int int) I.Ty.string in
  let deadline k = run (call_kind (k, 100)) in
  let cancel_soon k =
    let n = !calls in
    let p = call_kind (k, 1000) in
    run (called n >>= fun () -> Lwt.cancel !last; p)
  in
  let cancel_from_thread k =
    let n = !calls in
    let p = call_kind (k, 1000) in
    run (called n >|= fun () -> Thread.join (Thread.create (fun () -> Lwt.cancel !last) ()));
    run p
  in
  let canceled = "Canceled" and off_thread = "settled on a thread that is not the Lwt thread" in
  let want =
    [|
      (* kind: deadline, cancel on the Lwt thread, cancel from another thread *)
      [| "deadline"; canceled; off_thread |];
      [| "deadline"; "value 2"; "value 2" |];
      [| "value 3"; "value 3"; "value 3" |];
      [| "deadline"; "deadline"; "deadline" |];
      [| "ocaml: Not_found"; "ocaml: Not_found"; "ocaml: Not_found" |];
    |]
  in
  Array.iteri
    (fun k (name, _) ->
      List.iteri
        (fun j (how, f) ->
          let got = f k in
          if not (contains got want.(k).(j)) then fail "%s, %s: want %S, got %S" name how want.(k).(j) got;
          check_calls_back_to_zero ())
        [ ("Go's deadline", deadline); ("Lwt.cancel", cancel_soon); ("Lwt.cancel from a thread", cancel_from_thread) ])
    kinds;
  bridge_works ();
  print_endline "ok: 15 outcomes as they should be"

(* A signal that both Go (signal.Notify) and OCaml (Lwt_unix.on_signal)
   handle reaches both, whichever installed its handler first; each side's
   withdrawal leaves the other's. SIGPIPE: ignored by the program, a write
   to a closed pipe is EPIPE on both sides. *)
let signals_both () =
  I.init ();
  let notify = I.bind_sync "cases.notify" I.Ty.int I.Ty.unit in
  let reset = I.bind_sync "cases.reset" I.Ty.int I.Ty.unit in
  let go_count = I.bind_sync "cases.notified" I.Ty.int I.Ty.int in
  (* OCaml's signal numbers are its own: Go's are the system's. *)
  let sigint_no = 2 and sigusr1_no = 10 in
  let ocaml_count = Hashtbl.create 2 in
  let seen s = Option.value ~default:0 (Hashtbl.find_opt ocaml_count s) in
  let on_signal s = Lwt_unix.on_signal s (fun _ -> Hashtbl.replace ocaml_count s (seen s + 1)) in
  let send what s no ~ocaml ~go =
    let o0 = seen s and g0 = go_count no in
    Unix.kill (Unix.getpid ()) s;
    let got () = (seen s > o0, go_count no > g0) in
    (* Until each side that should have it has it (2 s at most), then 0.1 s
       more for a side that should not to show it did. *)
    let rec wait n =
      let o, g = got () in
      if ((o || not ocaml) && (g || not go)) || n = 0 then Lwt_unix.sleep 0.1
      else Lwt_unix.sleep 0.01 >>= fun () -> wait (n - 1)
    in
    run (wait 200);
    let o, g = got () in
    if o <> ocaml || g <> go then fail "%s: OCaml %b (want %b), Go %b (want %b)" what o ocaml g go;
    (* once each, not twice through a forwarding *)
    if seen s - o0 > 1 || go_count no - g0 > 1 then
      fail "%s: OCaml saw it %d times, Go %d" what (seen s - o0) (go_count no - g0)
  in
  notify sigint_no;
  let h = on_signal Sys.sigint in
  send "SIGINT, Go first" Sys.sigint sigint_no ~ocaml:true ~go:true;
  ignore (on_signal Sys.sigusr1);
  notify sigusr1_no;
  send "SIGUSR1, OCaml first" Sys.sigusr1 sigusr1_no ~ocaml:true ~go:true;
  reset sigusr1_no;
  send "SIGUSR1 after Go's signal.Reset" Sys.sigusr1 sigusr1_no ~ocaml:true ~go:false;
  Lwt_unix.disable_signal_handler h;
  send "SIGINT after Lwt's handler is gone" Sys.sigint sigint_no ~ocaml:false ~go:true;
  (* Go's signal.Stop (NotifyContext's stop) puts back SIG_DFL: with Lwt's
     handler installed first and after, the program's stays, called once. *)
  let sighup_no = 1 and sigwinch_no = 28 and sigwinch = 28 (* Linux's number: Sys has none before OCaml 5 *) in
  ignore (on_signal Sys.sighup);
  notify sighup_no;
  I.bind_sync "cases.stop" I.Ty.int I.Ty.unit sighup_no;
  send "SIGHUP after Go's signal.Stop" Sys.sighup sighup_no ~ocaml:true ~go:false;
  notify sigwinch_no;
  I.bind_sync "cases.stop" I.Ty.int I.Ty.unit sigwinch_no;
  ignore (on_signal sigwinch);
  send "SIGWINCH, Lwt's handler after Go's Stop" sigwinch sigwinch_no ~ocaml:true ~go:false;
  Sys.set_signal Sys.sigpipe Sys.Signal_ignore;
  let go_write = I.bind_sync "cases.write_closed_pipe" I.Ty.unit I.Ty.string () in
  if not (contains go_write "broken pipe") then fail "Go's write: %s" go_write;
  let r, w = Unix.pipe () in
  Unix.close r;
  (match Unix.write_substring w "x" 0 1 with
  | _ -> fail "OCaml's write to a closed pipe succeeded"
  | exception Unix.Unix_error (Unix.EPIPE, _, _) -> ());
  bridge_works ();
  print_endline "ok: both sides get each signal"

(* The library gives the program a 1 ns timer slack, unless
   LWT_INTEROP_KEEP_TIMER_SLACK is set: this case runs itself again, with a
   50 us slack to inherit (a thread inherits its creator's), with and
   without the variable. *)
let timer_slack_of () =
  I.init ();
  let slack = I.bind_sync "cases.timer_slack" I.Ty.unit I.Ty.int () in
  I.shutdown ();
  slack

let timer_slack () =
  let slack = timer_slack_of () in
  if slack <> 1 then fail "timer slack %d ns, want 1" slack;
  I.init ();
  I.bind_sync "cases.set_timer_slack" I.Ty.int I.Ty.unit 50_000;
  I.shutdown ();
  let child env =
    let env = Array.append env (Unix.environment ()) in
    let p = Unix.open_process_args_full Sys.executable_name [| Sys.executable_name; "timer_slack_kept" |] env in
    let ic, _, _ = p in
    let slack = int_of_string (input_line ic) in
    (match Unix.close_process_full p with Unix.WEXITED 0 -> () | _ -> fail "timer_slack_kept failed");
    slack
  in
  let set = child [||] and kept = child [| "LWT_INTEROP_KEEP_TIMER_SLACK=1" |] in
  if set <> 1 then fail "a child's slack: %d ns, want 1" set;
  if kept <> 50_000 then fail "LWT_INTEROP_KEEP_TIMER_SLACK set: %d ns, want the inherited 50000" kept;
  print_endline "ok: 1 ns by default; kept with LWT_INTEROP_KEEP_TIMER_SLACK"

let timer_slack_kept () = print_endline (string_of_int (timer_slack_of ()))

let cases =
  [
    ("stack_overflow_heap", stack_overflow_heap);
    ("error_chain", error_chain);
    ("wake_off_thread", wake_off_thread);
    ("goexit_goroutine", goexit "goroutine");
    ("goexit_task", goexit "task");
    ("goexit_sync", goexit "sync");
    ("deadlines", deadlines);
    ("alloc_failure", alloc_failure);
    ("dropped_handles", dropped_handles);
    ("fork", fork);
    ("nested_run", nested_run);
    ("register_off_thread", register_off_thread);
    ("lwt_thread_ended", lwt_thread_ended);
    ("signal_in_grace", signal_in_grace);
    ("nul_in_exception", nul_in_exception);
    ("cancel_off_thread", cancel_off_thread);
    ("shutdown_in_callback", shutdown_in_callback);
    ("run_bracket", run_bracket);
    ("idle_cost", idle_cost);
    ("signals_both", signals_both);
    ("promise_kinds", promise_kinds);
    ("timer_slack", timer_slack);
  ]

let () =
  match Sys.argv with
  | [| _; "list" |] -> List.iter (fun (name, _) -> print_endline name) cases
  | [| _; "timer_slack_kept" |] -> timer_slack_kept ()
  | [| _; name |] -> (
      match List.assoc_opt name cases with
      | Some f -> f ()
      | None -> fail "no case %S (cases.exe list)" name)
  | _ -> fail "usage: cases.exe NAME | list"
