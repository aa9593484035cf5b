(* Reliability under stress: two garbage collectors, leaks, load. Real
   OCaml + Lwt + the Go archive in one process. LWT_SOAK=N multiplies the
   round trips by N (CI runs N = 1). *)

open Lwt.Infix
module I = Lwt_interop

let run = Lwt_main.run
let contains s sub = Astring.String.is_infix ~affix:sub s

let soak =
  match Sys.getenv_opt "LWT_SOAK" with Some n -> max 1 (int_of_string n) | None -> 1

(* value_of in test/gomain/reliability.go: both sides build the same value
   for i, and each checks what the other sent. *)
let value_ty = I.Ty.(list (pair (option int) (pair string (pair bytes float))))

let value_of i =
  List.init (i mod 4) (fun k ->
      ( (if (i + k) mod 3 = 0 then None else Some (i * k)),
        (string_of_int (i + k), (Bytes.make (k + 1) (Char.chr ((i + k) land 255)), float i /. 7.)) ))

(* rel.ocaml_never's promises not cancelled yet (test_chaos_from_ocaml). *)
let never_waiting = ref 0

let () =
  I.register "rel.ocaml_gc_value" I.Ty.int value_ty (fun i ->
      if i mod 100 = 0 then Gc.full_major ();
      let v = value_of i in
      if i mod 2 = 0 then Lwt.return v else Lwt.pause () >|= fun () -> v);
  I.register_sync "rel.ocaml_add1" I.Ty.int I.Ty.int succ;
  I.register "rel.ocaml_later" I.Ty.int I.Ty.int (fun n ->
      Lwt_unix.sleep (float (n mod 3) *. 0.0001) >|= fun () -> n + 1);
  I.register "rel.ocaml_never" I.Ty.int I.Ty.int (fun _ ->
      let p, _ = Lwt.task () in
      incr never_waiting;
      Lwt.on_cancel p (fun () -> decr never_waiting);
      p);
  I.register "rel.ocaml_echo" I.Ty.string I.Ty.string (fun s ->
      let rec pauses k = if k = 0 then Lwt.return s else Lwt.pause () >>= fun () -> pauses (k - 1) in
      pauses (String.length s mod 3))

let held () =
  let s = I.stats () in
  (s.roots, s.handles, s.tasks, s.calls, s.jobs)

let check_held before =
  let show (r, h, t, c, j) = Printf.sprintf "%d roots, %d handles, %d tasks, %d calls, %d jobs" r h t c j in
  let after = held () in
  if after <> before then Alcotest.failf "the bridge holds more than before: %s, then %s" (show before) (show after)

(* Waits for Go's pending cleanups (posted root releases) to run. *)
let settle_down () =
  let rec go n = if n = 0 then Lwt.return_unit else Lwt_unix.sleep 0.01 >>= fun () -> go (n - 1) in
  Gc.full_major ();
  run (go 20);
  Gc.full_major ()

(* 100,000 round trips each way of a compound value, with Gc.full_major
   every 100, Gc.compact every 10,000 and Go's runtime.GC() every 1,000;
   each round trip also makes a Go handle and hands an OCaml value to Go
   and back. Everything arrives intact; nothing stays held. *)
let test_gc_stress () =
  let n = 100_000 * soak in
  let gc_value = I.bind_sync "rel.gc_value" I.Ty.int value_ty in
  let new_counter = I.bind_sync "test.new_counter" I.Ty.int I.Ty.handle in
  let keep = I.bind_sync "test.keep" I.Ty.opaque I.Ty.unit in
  let give_back = I.bind_sync "test.give_back" I.Ty.unit I.Ty.opaque in
  let key : int I.Opaque.key = I.Opaque.key () in
  let check = I.bind "rel.gc_check" I.Ty.int I.Ty.int in
  run (check 0 >|= ignore); (* Go looks rel.ocaml_gc_value up: a root until shutdown *)
  settle_down ();
  let roots, handles, _, _, _ = held () in
  for i = 0 to n - 1 do
    if gc_value i <> value_of i then Alcotest.failf "Go's value %d arrived changed" i;
    ignore (Sys.opaque_identity (new_counter i));
    keep (I.Opaque.inject key i);
    if I.Opaque.project key (give_back ()) <> Some i then Alcotest.failf "OCaml's value %d came back changed" i;
    if i mod 100 = 0 then Gc.full_major ();
    if i mod 10_000 = 0 then Gc.compact ()
  done;
  run (check n >|= Alcotest.(check int) "Go checked OCaml's values" n);
  I.bind_sync "test.release_kept" I.Ty.unit I.Ty.unit ();
  settle_down ();
  let roots', handles', tasks, calls, _ = held () in
  Alcotest.(check (list int)) "roots, handles, tasks, calls" [ roots; handles; 0; 0 ]
    [ roots'; handles'; tasks; calls ]

let rss_kib () =
  let ic = open_in "/proc/self/status" in
  let rec find () =
    match input_line ic with
    | l when String.length l > 6 && String.sub l 0 6 = "VmRSS:" ->
        Scanf.sscanf l "VmRSS: %d kB" Fun.id
    | _ -> find ()
  in
  Fun.protect ~finally:(fun () -> close_in ic) find

(* 1,000,000 round trips each way (OCaml calling a Go sync function and a Go
   loop task; a Go task calling an OCaml function), after 100,000 to warm
   up: RSS grows by at most 8 MiB, and the counts come back. *)
let test_leaks () =
  let n = 1_000_000 * soak in
  let add1 = I.bind_sync "rel.add1" I.Ty.int I.Ty.int in
  let task_add1 = I.bind "rel.task_add1" I.Ty.int I.Ty.int in
  let call_loop = I.bind "rel.call_loop" I.Ty.int I.Ty.int in
  let goroutines = I.bind_sync "rel.goroutines" I.Ty.unit I.Ty.int in
  let round_trips k =
    for i = 1 to k do
      if add1 i <> i + 1 then Alcotest.fail "add1"
    done;
    let rec tasks i = if i > k then Lwt.return_unit else task_add1 i >>= fun _ -> tasks (i + 1) in
    run (tasks 1);
    run (call_loop k >|= Alcotest.(check int) "Go called OCaml" k)
  in
  round_trips 100_000;
  settle_down ();
  let before = rss_kib () and held_before = held () and g_before = goroutines () in
  round_trips n;
  settle_down ();
  let growth = rss_kib () - before in
  Printf.printf "RSS growth over %d round trips each way: %d KiB\n" n growth;
  if growth > 8 * 1024 then Alcotest.failf "RSS grew by %d KiB" growth;
  check_held held_before;
  Alcotest.(check int) "goroutines" g_before (goroutines ())

(* 1,000 bridges in turn, each with calls both ways, a function Go looked
   up, and a call in flight at its shutdown: each bridge is freed, in Go as
   in OCaml (Go's heap objects after its GC stay put; nothing stays held). *)
let test_bridges_in_turn () =
  let n = 1_000 * soak in
  let add1 = I.bind_sync "rel.add1" I.Ty.int I.Ty.int in
  let call_loop = I.bind "rel.call_loop" I.Ty.int I.Ty.int in
  let until_cancelled = I.bind "rel.chaos_goroutine" I.Ty.int I.Ty.int in
  let heap_objects = I.bind_sync "rel.go_heap_objects" I.Ty.unit I.Ty.int in
  let goroutines = I.bind_sync "rel.goroutines" I.Ty.unit I.Ty.int in
  let bridge () =
    if add1 1 <> 2 then Alcotest.fail "add1";
    run (call_loop 2 >|= Alcotest.(check int) "Go called OCaml" 2);
    let pending = until_cancelled ((1 * 8) + 5) in
    I.shutdown ();
    (match Lwt.state pending with
    | Lwt.Fail I.Closed -> ()
    | _ -> Alcotest.fail "the call in flight at shutdown was not rejected with Closed");
    I.init ()
  in
  for _ = 1 to 100 do
    bridge ()
  done;
  settle_down ();
  let before = heap_objects () and rss_before = rss_kib () and held_before = held () and g_before = goroutines () in
  for _ = 1 to n do
    bridge ()
  done;
  settle_down ();
  let growth = heap_objects () - before in
  Printf.printf "over %d bridges: Go's heap objects %+d, RSS %+d KiB\n" n growth (rss_kib () - rss_before);
  if growth > 2 * n then Alcotest.failf "Go's heap grew by %d objects over %d bridges" growth n;
  check_held held_before;
  Alcotest.(check int) "goroutines" g_before (goroutines ())

(* 10,000 calls in flight each way with random payloads and random
   cancellations: every call is answered right or reports its
   cancellation, and nothing is left held. *)
let test_load () =
  let n = 10_000 in
  let echo = I.bind "test.echo" I.Ty.string I.Ty.string in
  let answered = ref 0 and cancelled = ref 0 in
  let one i =
    let s = String.make (Random.int 4096) (Char.chr (i land 255)) in
    let p = echo s in
    if Random.int 3 = 0 then Lwt.async (fun () -> Lwt_unix.sleep (Random.float 0.002) >|= fun () -> Lwt.cancel p);
    Lwt.catch
      (fun () ->
        p >|= fun r ->
        if r <> s then Alcotest.failf "call %d: wrong answer" i;
        incr answered)
      (function Lwt.Canceled -> incr cancelled; Lwt.return_unit | e -> Lwt.fail e)
  in
  run (Lwt_list.iter_p one (List.init n Fun.id));
  Printf.printf "OCaml -> Go: %d answered, %d cancelled\n" !answered !cancelled;
  Alcotest.(check int) "OCaml -> Go: every call accounted for" n (!answered + !cancelled);
  let load = I.bind "rel.load" I.Ty.int I.Ty.string in
  run
    ( load n >|= fun r ->
      Printf.printf "Go -> OCaml: %s (answered, cut short)\n" r;
      Scanf.sscanf r "%d %d" (fun got cut ->
          Alcotest.(check int) "Go -> OCaml: every call accounted for" n (got + cut)) );
  settle_down ();
  let _, _, tasks, calls, jobs = held () in
  Alcotest.(check (list int)) "tasks, calls, jobs" [ 0; 0; 0 ] [ tasks; calls; jobs ]

(* Random interleavings: Go's loop tasks and goroutines call [chaos_f] in
   every way they can (rel.chaos in test/gomain/reliability.go: Call, a
   promise that one task or two await, each calling again as it resumes, a
   Then callback, a goroutine's Call; contexts that end at any point), and
   OCaml answers in every way it can. An argument is n * 10 + kind: the
   answer is n + 1, or an exception naming n, at once or later, after a
   call back into Go, an OCaml GC, a promise many calls share (which the
   cancellation of any of them cancels for all: Lwt.Canceled is then an
   answer too) or a timer; kind 9 waits until Go cancels it. Each outcome
   is checked in Go. *)
let test_chaos () =
  let add1 = I.bind_sync "rel.add1" I.Ty.int I.Ty.int in
  let shared = ref (Lwt.task ()) and running = ref true in
  let rec tick () =
    Lwt_unix.sleep 0.0002 >>= fun () ->
    let p, u = !shared in
    shared := Lwt.task ();
    if Lwt.is_sleeping p then Lwt.wakeup u ();
    if !running then tick () else Lwt.return_unit
  in
  let f arg =
    let n = arg / 10 in
    let named = Printf.sprintf "chaos %d" n in
    match arg mod 10 with
    | 0 -> Lwt.return (n + 1)
    | 1 -> Lwt.pause () >|= fun () -> n + 1
    | 2 -> failwith named
    | 3 -> Lwt.fail_with named
    | 4 -> Lwt.pause () >>= fun () -> Lwt.fail_with named
    | 5 -> Lwt.return (add1 n)
    | 6 ->
        Gc.minor ();
        for _ = 1 to 1000 do
          ignore (Sys.opaque_identity (Bytes.create 64))
        done;
        Lwt.return (n + 1)
    | 7 ->
        let p, _ = !shared in
        if not (Lwt.is_sleeping p) then shared := Lwt.task ();
        fst !shared >|= fun () -> n + 1
    | 8 -> Lwt_unix.sleep (float (n mod 3) *. 0.0002) >|= fun () -> n + 1
    | _ -> fst (Lwt.task ())
  in
  let chaos = I.bind_fn "rel.chaos" I.Ty.(func int int @-> int @-> returning string) in
  let goroutines = I.bind_sync "rel.goroutines" I.Ty.unit I.Ty.int in
  (* Go's startup goroutine may not have exited yet right after init. *)
  settle_down ();
  let before = held () and g_before = goroutines () in
  let ticking = tick () in
  List.iter
    (fun _ ->
      let seed = Random.bits () in
      match run (chaos f seed) with
      | r -> Printf.printf "seed %d: %s (settled, cut short)\n" seed r
      | exception e -> Alcotest.failf "seed %d: %s" seed (Printexc.to_string e))
    (List.init (3 * soak) Fun.id);
  running := false;
  run ticking;
  settle_down ();
  check_held before;
  Alcotest.(check int) "goroutines" g_before (goroutines ())

(* Whether a Go error's message names call n: "chaos 1", not "chaos 12". *)
let names_call message n =
  let call = Printf.sprintf "chaos %d" n in
  let rec from start =
    match Astring.String.find_sub ~start ~sub:call message with
    | None -> false
    | Some i ->
        let after = i + String.length call in
        after = String.length message || (not (Astring.Char.Ascii.is_digit message.[after])) || from (i + 1)
  in
  from 0

(* The other way: 16 Lwt threads of 500 calls each call Go functions of
   each kind (a goroutine, a loop task, a sync one) in random
   interleavings, a quarter of the calls cancelled after a pause or a timer.
   An argument is n * 8 + kind (chaosAnswer in test/gomain/reliability.go):
   n + 1, or a Go error or panic naming n, at once, from a call back into
   OCaml or after a timer; kind 5 waits until OCaml cancels it; kinds 6 and
   7 wait on a call back into OCaml that answers after a timer (6) or only
   when cancelled (7): cancelling the call into Go must cancel that one
   too. *)
let test_chaos_from_ocaml () =
  let goroutine = I.bind "rel.chaos_goroutine" I.Ty.int I.Ty.int
  and task = I.bind "rel.chaos_task" I.Ty.int I.Ty.int
  and sync = I.bind "rel.chaos_sync" I.Ty.int I.Ty.int in
  let seed = Random.bits () in
  Random.init seed;
  let wrong = ref [] and settled = ref 0 and cancelled = ref 0 and next = ref 0 in
  let one () =
    incr next;
    let n = !next in
    let fn, kinds = match Random.int 3 with 0 -> (goroutine, 8) | 1 -> (task, 8) | _ -> (sync, 4) in
    let kind = Random.int kinds in
    let p = fn ((n * 8) + kind) in
    let cancels = kind = 5 || kind = 7 || Random.int 4 = 0 in
    if cancels then
      Lwt.async (fun () ->
          (if Random.bool () then Lwt.pause () else Lwt_unix.sleep (Random.float 0.0003)) >|= fun () -> Lwt.cancel p);
    let bad what = wrong := Printf.sprintf "call %d (kind %d): %s" n kind what :: !wrong in
    Lwt.try_bind
      (fun () -> p)
      (fun v ->
        if v = n + 1 && kind <> 1 && kind <> 2 && kind <> 5 && kind <> 7 then incr settled else bad (string_of_int v);
        Lwt.return_unit)
      (fun e ->
        (match e with
        | Lwt.Canceled when cancels -> incr cancelled
        | I.Go_error { message; _ } when (kind = 1 || kind = 2) && names_call message n ->
            incr settled
        | e -> bad (Printexc.to_string e));
        Lwt.return_unit)
  in
  let rec worker k = if k = 0 then Lwt.return_unit else one () >>= fun () -> worker (k - 1) in
  (* Go's first Lookup of each OCaml function keeps a root to it until
     shutdown. *)
  Alcotest.(check int) "add1 from Go" 2 (run (task ((1 * 8) + 3)));
  Alcotest.(check int) "later from Go" 2 (run (task ((1 * 8) + 6)));
  let never = task ((1 * 8) + 7) in
  let rec until_waiting () = if !never_waiting > 0 then Lwt.return_unit else Lwt.pause () >>= until_waiting in
  run (until_waiting ());
  Lwt.cancel never;
  settle_down ();
  Alcotest.(check int) "never from Go, cancelled" 0 !never_waiting;
  let before = held () in
  run (Lwt.join (List.init 16 (fun _ -> worker (500 * soak))));
  Printf.printf "seed %d: %d settled, %d cancelled\n" seed !settled !cancelled;
  if !wrong <> [] then
    Alcotest.failf "seed %d: %d wrong outcomes: %s" seed (List.length !wrong)
      (String.concat "; " (List.filteri (fun i _ -> i < 5) !wrong));
  settle_down ();
  check_held before;
  Alcotest.(check int) "calls into OCaml's never left waiting" 0 !never_waiting

(* Before init, the bridge refuses clearly, and so does a generated binding
   (whose bind runs at its first call); this runs first. *)
let not_initialised = "Lwt_interop: not initialised (call Lwt_interop.init first)"

let before_init () =
  (match I.bind "test.echo" I.Ty.string I.Ty.string with
  | (_echo : string -> string Lwt.t) -> failwith "bind before init did not fail"
  | exception Failure m when m = not_initialised -> ());
  match Go_bindings.args_describe 1L "x" true with
  | _ -> failwith "a generated binding called before init did not fail"
  | exception Failure m when m = not_initialised -> ()

(* The generated binding that failed before init binds once init has run. *)
let after_init () =
  let got = Go_bindings.args_describe 1L "x" true in
  if got <> {|1 "x" true|} then failwith ("a generated binding after a failed bind: " ^ got)

let () =
  Random.self_init ();
  before_init ();
  I.init ();
  after_init ();
  let tc name f = Alcotest.test_case name `Quick f in
  Alcotest.run "lwt_interop reliability"
    [
      ( "stress",
        [
          tc "GC stress: 100,000 round trips each way" test_gc_stress;
          tc "leaks: 1,000,000 round trips each way" test_leaks;
          tc "load: 10,000 calls each way" test_load;
          tc "bridges in turn: 1,000 init and shutdown" test_bridges_in_turn;
        ] );
      (* Also run under the race detector (TestEndToEnd/race). *)
      ( "chaos",
        [
          tc "Go to OCaml: random interleavings of calls" test_chaos;
          tc "OCaml to Go: random interleavings of calls" test_chaos_from_ocaml;
        ] );
    ]
