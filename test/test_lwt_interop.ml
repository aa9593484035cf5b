(* The end-to-end suite: real OCaml + Lwt + the Go archive in one process. *)

open Lwt.Infix
module I = Lwt_interop

let run = Lwt_main.run
let contains s sub = Astring.String.is_infix ~affix:sub s

let check_raises_matching name pred f =
  match f () with
  | _ -> Alcotest.failf "%s: no exception" name
  | exception e ->
      if not (pred e) then Alcotest.failf "%s: unexpected %s" name (Printexc.to_string e)

let go_error_with sub = function I.Go_error { message = m; _ } -> contains m sub | _ -> false

let rejects_with name sub p =
  Lwt.catch
    (fun () -> p >|= fun _ -> Alcotest.failf "%s: resolved" name)
    (fun e ->
      if not (go_error_with sub e) then
        Alcotest.failf "%s: want Go_error with %S, got %s" name sub (Printexc.to_string e);
      Lwt.return_unit)

let add1 = lazy (I.bind_sync "test.add1" I.Ty.int I.Ty.int)

(* What a goroutine of test/gomain last stored for test.last_err, once it has
   (waiting up to 3 s). *)
let last_err () =
  let get = I.bind_sync "test.last_err" I.Ty.unit I.Ty.string in
  let rec poll n =
    match get () with
    | "" when n > 0 -> Lwt_unix.sleep 0.01 >>= fun () -> poll (n - 1)
    | s -> Lwt.return s
  in
  run (poll 300)

let test_sync () =
  Alcotest.(check int) "add1" 42 (Lazy.force add1 41);
  check_raises_matching "63-bit overflow" (go_error_with "does not fit OCaml's 63-bit int")
    (fun () -> Lazy.force add1 max_int)

let test_string_roundtrip () =
  let echo = I.bind "test.echo" I.Ty.string I.Ty.string in
  let s = "nul\000inside, \xff\xfe not UTF-8" in
  run (echo s >|= Alcotest.(check string) "echo" s)

let test_values () =
  let echo_bytes = I.bind "test.echo_bytes" I.Ty.bytes I.Ty.bytes in
  let b = Bytes.of_string "\000bytes\255" in
  run (echo_bytes b >|= fun r -> Alcotest.(check bytes) "bytes" b r);
  let ty = I.Ty.(pair (list (option bool)) (pair float bytes)) in
  let echo_nested = I.bind "test.echo_nested" ty ty in
  List.iter
    (fun v ->
      run (echo_nested v >|= fun r -> if r <> v then Alcotest.fail "nested value changed"))
    [ ([ Some true; None; Some false ], (3.25, Bytes.of_string "x\000y")); ([], (-0., Bytes.empty)) ];
  let describe = I.bind_sync "test.describe" I.Ty.(list (pair (option int) string)) I.Ty.string in
  Alcotest.(check string) "Go reads the list" "1:a,None:,-2:c\000"
    (describe [ (Some 1, "a"); (None, ""); (Some (-2), "c\000") ]);
  Alcotest.(check string) "empty list" "" (describe []);
  check_raises_matching "int out of range in a list" (go_error_with "does not fit OCaml's 63-bit int")
    (fun () -> I.bind_sync "test.too_big_in_list" I.Ty.unit I.Ty.(list int) ());
  let reverses = I.bind "test.ocaml_reverses" I.Ty.(func (list (pair (option int) string)) (list (pair (option int) string))) I.Ty.string in
  run (reverses (fun l -> Lwt.pause () >|= fun () -> List.rev l) >|= Alcotest.(check string) "Go reads OCaml's list" "ok")

type counter

let test_handles () =
  let new_counter = I.bind_sync "test.new_counter" I.Ty.int (I.Ty.handle : counter I.handle I.Ty.t) in
  let bump = I.bind_sync "test.bump" I.Ty.handle I.Ty.int in
  let c = new_counter 41 in
  Alcotest.(check int) "Go's value, held by OCaml" 42 (bump c);
  Alcotest.(check int) "the same value" 43 (bump c);
  let as_string = I.bind_sync "test.string_handle" I.Ty.handle I.Ty.string in
  check_raises_matching "a handle of another Go type" (go_error_with "the handle holds a *main.counter, not a string")
    (fun () -> as_string c);
  let nil_error = I.bind_sync "test.nil_error_handle" I.Ty.unit I.Ty.handle () in
  Alcotest.(check bool) "a nil interface value, back as its type" true
    (I.bind_sync "test.error_handle" I.Ty.handle I.Ty.bool nil_error);
  check_raises_matching "a nil interface value, as another type" (go_error_with "the handle holds a error, not a string")
    (fun () -> as_string nil_error);
  let before = (I.stats ()).handles in
  for i = 1 to 1000 do ignore (Sys.opaque_identity (new_counter i)) done;
  Gc.full_major ();
  Gc.full_major ();
  Alcotest.(check bool) "OCaml's GC frees handles" true ((I.stats ()).handles <= before);
  ignore (Sys.opaque_identity c)

let test_opaque () =
  let key : (string * int) I.Opaque.key = I.Opaque.key () in
  let other : int I.Opaque.key = I.Opaque.key () in
  let keep = I.bind_sync "test.keep" I.Ty.opaque I.Ty.unit in
  let give_back = I.bind_sync "test.give_back" I.Ty.unit I.Ty.opaque in
  let roots = (I.stats ()).roots in
  keep (I.Opaque.inject key ("kept", 7));
  Gc.full_major ();
  Alcotest.(check int) "Go holds a root" (roots + 1) (I.stats ()).roots;
  let v = give_back () in
  Alcotest.(check (option (pair string int))) "same value, same key" (Some ("kept", 7)) (I.Opaque.project key v);
  Alcotest.(check (option int)) "another key" None (I.Opaque.project other v);
  I.bind_sync "test.release_kept" I.Ty.unit I.Ty.unit ();
  Alcotest.(check int) "released" roots (I.stats ()).roots;
  check_raises_matching "used after Release" (go_error_with "used after Release") give_back;
  check_raises_matching "a nil *lwt.Value" (go_error_with "a nil *lwt.Value cannot be passed to OCaml")
    (I.bind_sync "test.nil_value" I.Ty.unit I.Ty.opaque)

(* 64 MiB each way, in a string and in bytes. *)
let test_big_payloads () =
  let n = 64 * 1024 * 1024 in
  let s = String.init n (fun i -> Char.chr (i * 7 land 255)) in
  let echo = I.bind "test.echo" I.Ty.string I.Ty.string in
  run (echo s >|= fun r -> if r <> s then Alcotest.fail "64 MiB string changed");
  let echo_bytes = I.bind "test.echo_bytes" I.Ty.bytes I.Ty.bytes in
  let b = Bytes.of_string s in
  run (echo_bytes b >|= fun r -> if not (Bytes.equal r b) then Alcotest.fail "64 MiB bytes changed")

(* Calls from a thread that is not the Lwt thread fail, they do not crash. *)
let test_wrong_thread () =
  let outcome = ref "" in
  let t =
    Thread.create
      (fun () ->
        outcome :=
          match Lazy.force add1 1 with
          | _ -> "returned"
          | exception Failure m -> m
          | exception e -> Printexc.to_string e)
      ()
  in
  Thread.join t;
  Alcotest.(check string) "from another thread"
    "Lwt_interop.call: called from a thread that is not the Lwt thread" !outcome;
  let echo = I.bind "test.echo" I.Ty.string I.Ty.string in
  let p = ref (Lwt.return "") in
  Thread.join (Thread.create (fun () -> p := echo "x") ());
  (match Lwt.state !p with
  | Lwt.Fail (Failure m) when contains m "not the Lwt thread" -> ()
  | _ -> Alcotest.fail "an async call from another thread was not rejected");
  (* Every other entry, from another thread. *)
  let on_thread f = let r = ref "returned" in Thread.join (Thread.create (fun () -> r := f ()) ()); !r in
  let failure f () = match f () with _ -> "returned" | exception Failure m -> m | exception e -> Printexc.to_string e in
  let expect what want got = if not (contains got want) then Alcotest.failf "%s: %s" what got in
  expect "init" "already initialised on another thread" (on_thread (failure I.init));
  expect "shutdown" "Lwt_interop.shutdown: called from a thread" (on_thread (failure I.shutdown));
  expect "bind" "Lwt_interop.bind: called from a thread"
    (on_thread (failure (fun () -> I.bind "test.echo" I.Ty.string I.Ty.string)));
  expect "stats" "returned" (on_thread (failure I.stats));
  (* Lwt_main.run on another thread, with Go's result of a call to run. *)
  let pending = echo "go's job" in
  expect "Lwt_main.run" "Lwt_main.run runs on a thread that is not the Lwt thread"
    (on_thread (failure (fun () -> run (Lwt_unix.sleep 0.5))));
  Alcotest.(check string) "the job ran on the Lwt thread" "go's job" (run pending)

let test_bind_errors () =
  let invalid sub = function Invalid_argument m -> contains m sub | _ -> false in
  check_raises_matching "type mismatch"
    (invalid "OCaml binds \"test.add1\" as string -> int, but Go registered it as func(int64) (int64, error): argument: OCaml string is not Go int64")
    (fun () -> I.bind "test.add1" I.Ty.string I.Ty.int);
  check_raises_matching "compound mismatch"
    (invalid "argument: in a list: in part 1 of (string * int option) (Go lwt.Pair[*int64,string].First): OCaml string is not Go *int64")
    (fun () -> I.bind_sync "test.describe" I.Ty.(list (pair string (option int))) I.Ty.string);
  check_raises_matching "unknown" (invalid "no Go function registered as \"nope\"") (fun () ->
      I.bind "nope" I.Ty.unit I.Ty.unit);
  check_raises_matching "bind_sync of a goroutine" (invalid "is not a sync Go function")
    (fun () -> I.bind_sync "test.echo" I.Ty.string I.Ty.string)

let test_go_error () =
  run (rejects_with "test.fail" "boom" (I.bind "test.fail" I.Ty.string I.Ty.unit "boom"))

(* An error whose own methods panic (Error, Is) still rejects its promise,
   with a Go_error saying so: from each kind of Go function, a Go promise
   rejected later, and a Go callback. *)
let test_errors_whose_methods_panic () =
  let open I.Ty in
  let goroutine = I.bind "errors.bad_method" string unit
  and task = I.bind "errors.bad_method_task" string unit
  and sync = I.bind_sync "errors.bad_method_sync" string unit
  and later = I.bind_sync "errors.bad_method_later" string (promise unit)
  and callback = I.bind_sync "errors.bad_method_callback" string (func unit unit) in
  List.iter
    (fun meth ->
      let outcome p =
        Lwt.pick
          [
            Lwt.try_bind p (fun () -> Lwt.return "resolved") (function
              | I.Go_error { message; _ } -> Lwt.return message
              | e -> Lwt.return (Printexc.to_string e));
            (Lwt_unix.sleep 5. >|= fun () -> "still pending after 5 s");
          ]
      in
      List.iter
        (fun (what, p) ->
          let got = run (outcome p) in
          let want = Printf.sprintf "a method of the error (main.badError) panicked: %s panics" meth in
          if not (contains got want) then Alcotest.failf "%s, %s panics: %s" what meth got)
        [
          ("goroutine", fun () -> goroutine meth);
          ("task", fun () -> task meth);
          ("sync", fun () -> Lwt.wrap (fun () -> sync meth));
          ("a Go promise", fun () -> later meth);
          ("a Go callback", fun () -> callback meth ());
        ])
    [ "Error"; "Is" ]

(* Errors keep their kind both ways: registered pairs, Canceled, Closed, a
   Go error's type, and a Go error that went through OCaml and back. *)
let test_typed_errors () =
  I.register_exception "not_found" Not_found;
  check_raises_matching "register twice" (function Invalid_argument _ -> true | _ -> false) (fun () ->
      I.register_exception "not_found" Exit);
  let not_found = I.bind_sync "errors.not_found" I.Ty.bool I.Ty.unit in
  check_raises_matching "a registered Go error" (( = ) Not_found) (fun () -> not_found false);
  check_raises_matching "wrapped with %w" (( = ) Not_found) (fun () -> not_found true);
  let open_ = I.bind_sync "errors.open" I.Ty.string I.Ty.unit in
  (match open_ "/nonexistent/file" with
  | () -> Alcotest.fail "opened"
  | exception I.Go_error { message; go_type; stack } ->
      Alcotest.(check string) "the Go error's type" "*fs.PathError" go_type;
      Alcotest.(check string) "its text" "open /nonexistent/file: no such file or directory" message;
      Alcotest.(check string) "no stack" "" stack);
  run
    (Lwt.catch
       (fun () -> I.bind "errors.canceled" I.Ty.unit I.Ty.unit () >|= fun () -> Alcotest.fail "resolved")
       (function Lwt.Canceled -> Lwt.return_unit | e -> Alcotest.failf "got %s" (Printexc.to_string e)));
  let raises = function
    | "not_found" -> raise Not_found
    | "failure" -> failwith "bad \000 input"
    | "canceled" -> Lwt.fail Lwt.Canceled
    | "closed" -> Lwt.fail I.Closed
    | _ -> (
        try open_ "/nonexistent/file"; Lwt.return_unit with e -> Lwt.fail e)
  in
  let classify = I.bind "errors.classify" I.Ty.(func string unit) I.Ty.string in
  run
    (classify raises
    >|= Alcotest.(check string)
          "what Go saw"
          "not_found: Not_found [] not_found=true canceled=false closed=false error=\"ocaml: Not_found\"\n\
           failure: Failure [\"bad \\x00 input\"] not_found=false canceled=false closed=false error=\"ocaml: Failure(\\\"bad \\\\000 input\\\")\"\n\
           canceled: Lwt.Canceled [] not_found=false canceled=true closed=false error=\"ocaml: Lwt.Canceled\"\n\
           closed: Lwt_interop.Closed [] not_found=false canceled=false closed=true error=\"ocaml: Lwt_interop.Closed\"\n\
           go_error: Lwt_interop.Go_error [\"open /nonexistent/file: no such file or directory\"] not_found=false \
           canceled=false closed=false error=\"open /nonexistent/file: no such file or directory\"");
  let pass_through = I.bind "errors.pass_through" I.Ty.(func string unit) I.Ty.unit in
  run
    (Lwt.catch
       (fun () -> pass_through (fun p -> Lwt.wrap1 open_ p) >|= fun () -> Alcotest.fail "resolved")
       (function
         | I.Go_error { message; go_type; _ } ->
             Alcotest.(check string) "the type after two crossings" "*fs.PathError" go_type;
             Alcotest.(check string) "the text after two crossings" "open /nonexistent/file: no such file or directory" message;
             Lwt.return_unit
         | e -> Alcotest.failf "got %s" (Printexc.to_string e)))

let test_go_awaits_ocaml () =
  let call_twice = I.bind "test.call_twice" I.Ty.(func int int) I.Ty.int in
  let f x = Lwt.pause () >|= fun () -> x * 10 in
  run (call_twice f >|= Alcotest.(check int) "f (f 1)" 100)

let test_outcomes () =
  let f = function
    | 1 -> Lwt.return 10
    | 2 -> Lwt.pause () >|= fun () -> 20
    | 3 -> failwith "at once"
    | _ -> Lwt.pause () >>= fun () -> Lwt.fail_with "later"
  in
  let want =
    String.concat "|"
      [ "10 <nil>"; "10 <nil>"; "20 <nil>"; "20 <nil>";
        "0 ocaml: Failure(\"at once\") (backtrace)"; "0 ocaml: Failure(\"at once\") (backtrace)";
        "0 ocaml: Failure(\"later\")"; "0 ocaml: Failure(\"later\")" ]
  in
  List.iter
    (fun name ->
      let outcomes = I.bind name I.Ty.(func int int) I.Ty.string in
      run (outcomes f >|= Alcotest.(check string) name want))
    [ "test.outcomes_task"; "test.outcomes_goroutine" ]

(* The same outcomes, each from a call that a Go task makes as soon as
   OCaml's answer to its previous call (later: a value, then an exception)
   resumed it: the bridge makes such a call from C, once Go has returned,
   and its outcome reaches Go as if it came later. 5 calls back into Go
   before it answers. *)
let test_outcomes_resumed () =
  let go_reenter = I.bind_sync "test.reenter" I.Ty.int I.Ty.int in
  let f = function
    | 1 -> Lwt.return 10
    | 2 -> Lwt.pause () >|= fun () -> 20
    | 3 -> failwith "at once"
    | 4 -> Lwt.pause () >>= fun () -> Lwt.fail_with "later"
    | 5 -> Lwt.return (go_reenter 6)
    | _ -> Lwt.fail_with "at once, as a promise"
  in
  let outcome = function
    | 1 -> "10 <nil>"
    | 2 -> "20 <nil>"
    | 3 -> "0 ocaml: Failure(\"at once\") (backtrace)"
    | 4 -> "0 ocaml: Failure(\"later\")"
    | 5 -> "6 <nil>"
    | _ -> "0 ocaml: Failure(\"at once, as a promise\")"
  in
  let want =
    List.concat_map (fun resume_by -> List.map (fun x -> outcome resume_by ^ " then " ^ outcome x) [ 1; 3; 5; 6; 2; 4 ]) [ 2; 4 ]
  in
  let outcomes = I.bind "test.outcomes_resumed" I.Ty.(func int int) I.Ty.string in
  run (outcomes f >|= fun got -> Alcotest.(check (list string)) "outcomes" want (String.split_on_char '|' got));
  Alcotest.(check int) "no call left" 0 (I.stats ()).calls

(* One answer of OCaml's resumes several Go tasks (a promise's waiters):
   the first calls OCaml as it resumes, then the second calls OCaml too (its
   call runs the GC and allocates), or releases the function. OCaml sees
   the calls in the tasks' order, each with its own argument, and the
   released function's call in flight completes. *)
let test_resumed_together () =
  let seen = ref [] in
  let a = String.make 24 'A' in
  let f = function
    | "wait" -> Lwt.pause () >|= fun () -> "w"
    | s ->
        seen := s :: !seen;
        Gc.full_major ();
        for i = 1 to 100_000 do
          ignore (Sys.opaque_identity (String.make 24 (Char.chr (48 + (i mod 10)))))
        done;
        Lwt.return s
  in
  let together = I.bind "test.resumed_together" I.Ty.(func string string) I.Ty.string in
  Alcotest.(check string) "both calls" (a ^ " <nil>, B <nil>") (run (together f));
  Alcotest.(check (list string)) "in the tasks' order" [ a; "B" ] (List.rev !seen);
  let release = I.bind "test.resumed_together_release" I.Ty.(func string string) I.Ty.string in
  Alcotest.(check string) "released meanwhile" (a ^ " <nil>, released <nil>") (run (release f));
  Alcotest.(check int) "no call left" 0 (I.stats ()).calls

(* OCaml code of a call that a task makes as it resumes is OCaml code that
   Go called, wherever the bridge makes the call from: shutdown is refused
   there. *)
let test_shutdown_in_resumed_call () =
  let refused = ref "" in
  let f = function
    | "wait" -> Lwt.pause () >|= fun () -> "w"
    | _ ->
        (refused := try I.shutdown (); "shutdown ran" with I.Go_error { message; _ } -> message);
        Lwt.return "after"
  in
  let g = I.bind "test.shutdown_in_resumed_call" I.Ty.(func string string) I.Ty.string in
  Alcotest.(check string) "the call" "after" (run (g f));
  Alcotest.(check bool) ("refused: " ^ !refused) true (contains !refused "shutdown from OCaml code called by Go")

(* A Go task's context ends while two of its Func.Go calls wait on one
   OCaml promise (the second chained on the first's): cancelling the first
   settles the second at once; both end, and the task's Await too. *)
let test_cancel_settles_another () =
  let p, _ = Lwt.task () in
  let f = function 1 -> p | _ -> p >|= succ in
  let g = I.bind "test.cancel_settles_another" I.Ty.(func int int) I.Ty.string in
  Alcotest.(check string) "each ended" "context canceled | context canceled | ocaml: Lwt.Canceled" (run (g f))

(* The same refusal when the call's OCaml code first resumes another Go
   task, which makes a call of its own as it resumes. *)
let test_shutdown_in_nested_resumed_call () =
  let refused = ref "" in
  let q, u = Lwt.task () in
  let f = function
    | "wait" -> Lwt.pause () >|= fun () -> "w"
    | "wait2" -> q
    | "x" ->
        Lwt.wakeup u "q";
        (refused := try I.shutdown (); "shutdown ran" with I.Go_error { message; _ } -> message);
        Lwt.return "after"
    | s -> Lwt.return s
  in
  let g = I.bind "test.shutdown_in_nested_resumed_call" I.Ty.(func string string) I.Ty.string in
  Alcotest.(check string) "both calls" "after <nil>, y <nil>" (run (g f));
  Alcotest.(check bool) ("refused: " ^ !refused) true (contains !refused "shutdown from OCaml code called by Go")

(* The functions registered below. Once Go looks one up, the bridge holds a
   root to it until it shuts down. *)
let named = [ "ocaml.tenfold"; "ocaml.upper"; "ocaml.on_lwt_thread"; "ocaml.gc_and_alloc"; "ocaml.reenter" ]

let () =
  I.register "ocaml.tenfold" I.Ty.int I.Ty.int (fun x -> Lwt.pause () >|= fun () -> 10 * x);
  I.register_sync "ocaml.upper" I.Ty.string I.Ty.string (function
    | "" -> invalid_arg "empty"
    | s -> String.uppercase_ascii s);
  I.register_sync "ocaml.on_lwt_thread" I.Ty.unit I.Ty.bool I.on_lwt_thread;
  I.register_sync "ocaml.gc_and_alloc" I.Ty.unit I.Ty.unit (fun () ->
      Gc.minor ();
      (* Fill the minor heap, over whatever died in it. *)
      for _ = 1 to 60_000 do
        ignore (Sys.opaque_identity (String.make 40 's'))
      done);
  let go_reenter = lazy (I.bind_sync "test.reenter" I.Ty.int I.Ty.int) in
  I.register_sync "ocaml.reenter" I.Ty.int I.Ty.int (function
    | 0 -> 0
    | n -> 1 + Lazy.force go_reenter (n - 1))

(* OCaml -> Go -> OCaml -> Go ..., 100 crossings each way, in one call. *)
let test_reentrant_chain () =
  let go_reenter = I.bind_sync "test.reenter" I.Ty.int I.Ty.int in
  Alcotest.(check int) "200 nested calls" 200 (go_reenter 200);
  run (Lwt.return_unit);
  Alcotest.(check int) "no call left" 0 (I.stats ()).calls

let test_on_loop () =
  let on_loop = I.bind "test.on_loop" I.Ty.unit I.Ty.string in
  run
    (on_loop ()
    >|= Alcotest.(check string) "where Go's code ran"
          "post=true onloop=true spawn=50 goroutine=true <nil>")

let test_named () =
  let want =
    "40 <nil> ABC <nil> ocaml: Invalid_argument(\"empty\") | lwt: no OCaml function registered \
     as \"ocaml.nope\" | lwt: OCaml registered \"ocaml.tenfold\" as int -> int, but Go looks it \
     up as Func[string, int64]: argument: OCaml int is not Go string"
  in
  List.iter
    (fun name -> run (I.bind name I.Ty.unit I.Ty.string () >|= Alcotest.(check string) name want))
    [ "test.named_task"; "test.named_goroutine" ];
  Alcotest.(check string) "from a Go sync function"
    ("SYNC <nil> | " ^ "lwt: waiting on the Lwt thread outside a loop task would block the event loop \
      (use a task, Then, Func.Go, or a goroutine)")
    (I.bind_sync "test.named_sync" I.Ty.unit I.Ty.string ());
  check_raises_matching "registered twice" (function Invalid_argument _ -> true | _ -> false)
    (fun () -> I.register "ocaml.tenfold" I.Ty.int I.Ty.int Lwt.return)

let test_cancel () =
  let wait = I.bind "test.wait_cancel" I.Ty.unit I.Ty.unit in
  let cancelled = I.bind_sync "test.cancelled" I.Ty.unit I.Ty.int in
  let before = cancelled () in
  run
    (let p = wait () in
     Lwt.pause () >>= fun () ->
     Lwt.cancel p;
     let rec poll n =
       if cancelled () > before then Lwt.return_unit
       else if n = 0 then Alcotest.fail "the Go context was not cancelled"
       else Lwt_unix.sleep 0.01 >>= fun () -> poll (n - 1)
     in
     poll 500)

(* Many Go calls in flight at once, each kind, and Lwt.cancel racing Go's
   answers: every call resolves with its own answer or is cancelled, and
   none is left behind. *)
let test_in_flight_and_races () =
  let echo = I.bind "test.echo" I.Ty.string I.Ty.string in
  let tenfold_task = I.bind "test.call_twice" I.Ty.(func int int) I.Ty.int in
  let n = 2000 in
  run
    (Lwt_list.iter_p
       (fun i ->
         let s = string_of_int i in
         echo s >|= fun r -> if r <> s then Alcotest.failf "call %d got %S" i r)
       (List.init n Fun.id));
  run
    (Lwt_list.iter_p
       (fun i ->
         tenfold_task (fun x -> Lwt.pause () >|= fun () -> x + i) >|= fun r ->
         if r <> 1 + (2 * i) then Alcotest.failf "task %d got %d" i r)
       (List.init n Fun.id));
  let resolved = ref 0 and cancelled = ref 0 in
  let race i =
    let p = echo (string_of_int i) in
    (* Cancel after 0 to 0.5 ms: some calls have their answer by then. *)
    (if i mod 5 = 0 then Lwt.return_unit else Lwt_unix.sleep (float (i mod 5) *. 0.000125))
    >>= fun () ->
    Lwt.cancel p;
    Lwt.catch
      (fun () ->
        p >|= fun s ->
        if s <> string_of_int i then Alcotest.failf "raced call %d got %S" i s;
        incr resolved)
      (function
        | Lwt.Canceled ->
            incr cancelled;
            Lwt.return_unit
        | e -> Lwt.fail e)
  in
  let rec batches i = if i >= n then Lwt.return_unit else
      Lwt_list.iter_p race (List.init 20 (fun k -> i + k)) >>= fun () -> batches (i + 20)
  in
  run (batches 0);
  if !resolved = 0 || !cancelled = 0 then Alcotest.fail "the race was not run: every call went one way";
  Alcotest.(check int) "every call accounted for" n (!resolved + !cancelled)

let test_stall_reported () =
  let block = I.bind_sync "test.block" I.Ty.int I.Ty.unit in
  let before = (I.stats ()).stalls in
  block 1;
  Alcotest.(check int) "a short call is no stall" before (I.stats ()).stalls;
  block 600;
  Alcotest.(check int) "a blocking call is reported once" (before + 1) (I.stats ()).stalls

(* An OCaml promise that only cancellation ends; reports whether it was. *)
let cancellable_forever () =
  let cancelled = ref false in
  let f () =
    let p, _ = Lwt.task () in
    Lwt.on_cancel p (fun () -> cancelled := true);
    p
  in
  (f, cancelled)

(* The Lwt promise is cancelled on the Lwt thread soon after Go's context
   ends: wait for it. *)
let rec until_cancelled what cancelled n =
  if !cancelled then Lwt.return_unit
  else if n = 0 then Alcotest.failf "%s: Lwt.on_cancel did not run" what
  else Lwt_unix.sleep 0.002 >>= fun () -> until_cancelled what cancelled (n - 1)

let test_go_cancels_ocaml () =
  List.iter
    (fun name ->
      let await_timeout = I.bind name I.Ty.(func unit unit) I.Ty.string in
      let f, cancelled = cancellable_forever () in
      run
        ( await_timeout f >>= fun err ->
          Alcotest.(check string) (name ^ ": Go's error") "context deadline exceeded" err;
          until_cancelled name cancelled 1000 ))
    [ "test.task_await_timeout"; "test.goroutine_await_timeout" ];
  (* Lwt.cancel of a Go task cancels its context, and so the OCaml call it awaits. *)
  let own = I.bind "test.task_await_own" I.Ty.(func unit unit) I.Ty.unit in
  let f, cancelled = cancellable_forever () in
  run
    (let p = own f in
     Lwt.pause () >>= fun () ->
     Lwt.cancel p;
     Lwt.catch (fun () -> p) (fun _ -> Lwt.return_unit) >>= fun () ->
     until_cancelled "task's own context" cancelled 1000)

let deep_recursion () =
  (* Deep enough to overflow on OCaml 5 too, whose stack limit is
     OCAMLRUNPARAM's l (1 GiB by default), not the system stack. *)
  let rec deep n = if n = 0 then 0 else 1 + deep (n - 1) in
  deep (Sys.opaque_identity 1_000_000_000_000)

let test_go_nil_dereference () =
  let nil_task = I.bind "test.nil_task" I.Ty.unit I.Ty.int in
  let nil_goroutine = I.bind "test.nil_goroutine" I.Ty.unit I.Ty.int in
  let nil_sync = I.bind_sync "test.nil_sync" I.Ty.unit I.Ty.int in
  let nil = "nil pointer dereference" in
  run (rejects_with "task" nil (nil_task ()));
  run (rejects_with "goroutine" nil (nil_goroutine ()));
  check_raises_matching "sync" (go_error_with nil) nil_sync;
  (* OCaml's own stack overflow detection still works in the same process. *)
  check_raises_matching "Stack_overflow" (( = ) Stack_overflow) deep_recursion;
  run (rejects_with "task again" nil (nil_task ()));
  (* Other runtime panics, and panic with a value, in each kind. *)
  let task = I.bind "test.panic_task" I.Ty.string I.Ty.int in
  let goroutine = I.bind "test.panic_goroutine" I.Ty.string I.Ty.int in
  let sync = I.bind_sync "test.panic_sync" I.Ty.string I.Ty.int in
  List.iter
    (fun (what, want) ->
      run (rejects_with ("task " ^ what) want (task what));
      run (rejects_with ("goroutine " ^ what) want (goroutine what));
      check_raises_matching ("sync " ^ what) (go_error_with want) (fun () -> sync what))
    [
      ("index", "index out of range");
      ("divide", "integer divide by zero");
      ("boom", "panic: boom");
    ];
  (* A panic's stack comes apart from its message. *)
  match sync "boom" with
  | _ -> Alcotest.fail "no panic"
  | exception I.Go_error { message; go_type; stack } ->
      Alcotest.(check string) "the panic's message" "panic: boom" message;
      Alcotest.(check string) "its Go type" "*lwt.PanicError" go_type;
      Alcotest.(check bool) "its stack" true (contains stack "goroutine" && contains stack "panic")

(* SIGCHLD from 100 Lwt_process children exiting and from another process
   (kill -CHLD in a loop, with as many SIGURG, the signal Go preempts
   goroutines with), while a Go task makes round trips through Lwt and Lwt
   has a SIGCHLD handler installed (Lwt_unix.on_signal: one without
   SA_ONSTACK, that the signal fix must move to the alternate stack). The
   storm's sender is reaped by a blocking waitpid in a system thread. *)
let spawn_and_reap prog args =
  let pid = Unix.create_process prog args Unix.stdin Unix.stdout Unix.stderr in
  Lwt_preemptive.detach
    (fun () ->
      let rec wait () =
        match Unix.waitpid [] pid with
        | _, status -> status
        | exception Unix.Unix_error (Unix.EINTR, _, _) -> wait ()
      in
      wait ())
    ()

let test_sigchld_storm () =
  let seen = ref 0 in
  let handler = Lwt_unix.on_signal Sys.sigchld (fun _ -> incr seen) in
  let count = ref 0 in
  let f () = incr count; Lwt.pause () in
  let loop = I.bind "seed.task" I.Ty.(func unit unit) I.Ty.unit f in
  let storm =
    spawn_and_reap "/bin/sh"
      [| "/bin/sh"; "-c";
         "i=0; while [ $i -lt 100000 ]; do kill -CHLD $PPID; kill -URG $PPID; i=$((i+1)); done" |]
  in
  let rec children n =
    if n = 0 then Lwt.return_unit
    else
      Lwt_process.exec ("/bin/true", [| "/bin/true" |]) >>= function
      | Unix.WEXITED 0 -> children (n - 1)
      | _ -> Alcotest.fail "a child did not exit cleanly"
  in
  let timeout = Lwt_unix.sleep 120. >>= fun () -> Alcotest.fail "the storm did not end in 120 s" in
  run
    (Lwt.pick [ Lwt.join [ children 100; (storm >|= fun _ -> ()) ]; timeout ] >>= fun () ->
     let n = !count in
     Lwt.cancel loop;
     Lwt.catch (fun () -> loop) (fun _ -> Lwt.return_unit) >|= fun () ->
     Lwt_unix.disable_signal_handler handler;
     if n = 0 then Alcotest.fail "no round trip during the storm";
     if !seen = 0 then Alcotest.fail "the SIGCHLD handler never ran")

(* [pinned]: the OCaml functions that other tests looked up from Go since
   the bridge started, which it holds until shutdown. *)
let test_released pinned () =
  let look_up = I.bind_sync "test.look_up" I.Ty.string I.Ty.unit in
  List.iter look_up named;
  let named_roots = List.length named + pinned in
  let rec wait n =
    let s = I.stats () in
    if s.roots = named_roots && s.tasks = 0 && s.calls = 0 && s.jobs = 0 then Lwt.return_unit
    else if n = 0 then
      Alcotest.failf "still held: roots=%d tasks=%d calls=%d jobs=%d" s.roots s.tasks s.calls s.jobs
    else Lwt_unix.sleep 0.01 >>= fun () -> wait (n - 1)
  in
  run (wait 300)

let test_shutdown_and_restart () =
  I.shutdown ();
  I.shutdown ();
  check_raises_matching "call after shutdown" (( = ) I.Closed) (fun () ->
      Lazy.force add1 1);
  I.init ();
  Alcotest.(check int) "after restart" 2 (Lazy.force add1 1);
  let upper = I.bind_sync "test.named_sync" I.Ty.unit I.Ty.string in
  Alcotest.(check bool) "OCaml's registrations handed over again" true
    (contains (upper ()) "SYNC <nil>")

(* Go's calls in flight at shutdown: answered within the grace period, not
   answered, a goroutine awaiting an OCaml promise that never settles, and
   calls that end with their context's error (Closed too: shutdown, not
   Lwt.cancel, ended it). *)
let test_shutdown_grace () =
  let slow = I.bind "test.slow_to_stop" I.Ty.unit I.Ty.string in
  let never = I.bind "test.never_stops" I.Ty.unit I.Ty.string in
  let forever = I.bind "test.await_forever" I.Ty.(func unit unit) I.Ty.unit in
  let until_cancelled = I.bind "test.until_cancelled" I.Ty.unit I.Ty.unit in
  let never_settled = I.bind_sync "test.never_settled" I.Ty.unit I.Ty.(promise string) in
  let bad_error = I.bind "errors.bad_method_at_shutdown" I.Ty.string I.Ty.unit in
  let p1 = slow () and p2 = never () and p3 = forever (fun () -> fst (Lwt.task ())) in
  let p4 = until_cancelled () and p5 = never_settled () and p6 = bad_error "Is" in
  run (Lwt_unix.sleep 0.05);
  I.shutdown ~grace:0.2 ();
  let shut_down = function Lwt.Fail I.Closed -> true | _ -> false in
  (match Lwt.state p1 with
  | Lwt.Return s -> Alcotest.(check string) "answered in time" "stopped: context canceled" s
  | _ -> Alcotest.fail "the call that answered in time was not resolved");
  if not (shut_down (Lwt.state p2)) then Alcotest.fail "the call still running was not rejected";
  if not (shut_down (Lwt.state p3)) then Alcotest.fail "the awaiting call was not rejected";
  let closed what = function
    | Lwt.Fail I.Closed -> ()
    | Lwt.Fail e -> Alcotest.failf "%s: %s, not Closed" what (Printexc.to_string e)
    | _ -> Alcotest.failf "%s: not rejected" what
  in
  closed "a call that returned its context's error" (Lwt.state p4);
  closed "a Go promise awaited" (Lwt.state p5);
  (match Lwt.state p6 with
  | Lwt.Fail (I.Go_error { message; _ }) when contains message "(main.badError) panicked: Is panics" -> ()
  | Lwt.Fail e -> Alcotest.failf "an error whose Is panics: %s" (Printexc.to_string e)
  | _ -> Alcotest.fail "an error whose Is panics: not rejected");
  I.init ();
  Alcotest.(check string) "Go's pending call into OCaml" "lwt: shut down" (last_err ())

(* During shutdown's grace period the Lwt thread waits without holding
   OCaml's runtime: another thread runs (a probe found it frozen for the
   whole period). A call that ignores its context keeps the period going. *)
let test_shutdown_grace_lets_threads_run () =
  let never = I.bind "test.never_stops" I.Ty.unit I.Ty.string in
  let p = never () in
  let ticks = ref 0 and stop = ref false in
  let ticker = Thread.create (fun () -> while not !stop do Thread.delay 0.002; incr ticks done) () in
  let before = !ticks in
  I.shutdown ~grace:0.3 ();
  let during = !ticks - before in
  stop := true;
  Thread.join ticker;
  I.init ();
  (match Lwt.state p with Lwt.Fail I.Closed -> () | _ -> Alcotest.fail "the call was not rejected");
  (* ~150 ticks in 0.3 s; with the runtime held, at most one or two in the
     OCaml callbacks that end the shutdown. *)
  if during < 10 then Alcotest.failf "another thread ran %d times during the grace period" during

(* Waits (up to 5 s) until the bridge refuses calls: a shutdown that Go
   began has ended. *)
let until_closed what =
  let rec poll n =
    match Lazy.force add1 1 with
    | _ when n = 0 -> Alcotest.failf "%s did not shut the bridge down" what
    | _ -> Lwt_unix.sleep 0.01 >>= fun () -> poll (n - 1)
    | exception I.Closed -> Lwt.return_unit
  in
  poll 500

(* Found in review: tasks resumed on a sync call's way out run the GC
   before OCaml gets the result. *)
let test_sync_result_vs_tasks () =
  let f = I.bind_sync "test.sync_result_vs_tasks" I.Ty.int I.Ty.string in
  for _ = 1 to 20 do
    Alcotest.(check string) "the sync function's result" (String.make 40 'x') (f 40)
  done;
  run (Lwt.pause ())

(* Found in review: a task that retries Call forever once shutdown stopped
   it is unwound, so shutdown returns. *)
let test_shutdown_unwinds_retrying_task () =
  List.iter
    (fun name ->
      let retry = I.bind name I.Ty.(func unit unit) I.Ty.unit in
      let p = retry (fun () -> fst (Lwt.task ())) in
      run (Lwt.pause ());
      I.shutdown ~grace:0.05 ();
      (match Lwt.state p with
      | Lwt.Fail I.Closed -> ()
      | _ -> Alcotest.failf "%s: the retrying task's call was not rejected" name);
      I.init ())
    [ "test.retry_forever"; "test.retry_forever_await" ]

(* Found in review: a Go call that shuts the bridge down waits for itself
   until the default grace period ends, then is rejected like the rest. *)
let test_shutdown_from_a_go_call () =
  let quit = I.bind "test.shutdown_self" I.Ty.unit I.Ty.unit in
  let p = quit () in
  run (until_closed "Shutdown from a Go call");
  (match Lwt.state p with
  | Lwt.Fail I.Closed -> ()
  | _ -> Alcotest.fail "the call that shut the bridge down was not rejected");
  I.init ();
  (* Under a deadline, which ends the grace period: Shutdown returns once
     the shutdown has ended, not with the deadline's error (found by a
     probe: it returned while the shutdown went on). *)
  let quit_by = I.bind "test.shutdown_self_by" I.Ty.int I.Ty.unit in
  let p = quit_by 500 in
  run (until_closed "Shutdown from a Go call, under a deadline");
  (match Lwt.state p with
  | Lwt.Fail I.Closed -> ()
  | _ -> Alcotest.fail "the call that shut the bridge down by a deadline was not rejected");
  I.init ();
  Alcotest.(check string) "what Shutdown under a deadline saw" "shutdown: <nil>; calls in flight: 0"
    (last_err ())

(* Found in review: two Shutdowns from Go at once, and a Post racing them:
   both return, nothing is closed twice, the job runs or is refused. *)
let test_two_shutdowns () =
  let two = I.bind "test.two_shutdowns" I.Ty.unit I.Ty.unit in  (* a sync function *)
  run (two () >>= fun () -> until_closed "two Shutdowns");
  I.init ();
  Alcotest.(check string) "both Shutdowns" "<nil> <nil> posted job ran or refused: true" (last_err ())

let test_shutdown_from_go () =
  Alcotest.(check bool) "not from the Lwt thread" true
    (contains (I.bind_sync "test.shutdown_on_loop" I.Ty.unit I.Ty.string ()) "call it from a goroutine");
  run (I.bind "test.go_shutdown" I.Ty.unit I.Ty.unit () >>= fun () -> until_closed "Go's Shutdown");
  I.shutdown ();
  I.init ();
  Alcotest.(check string) "Shutdown's result" "<nil>" (last_err ());
  Alcotest.(check int) "after restart" 2 (Lazy.force add1 1)

let () =
  Printexc.record_backtrace true;
  I.init ();
  let tc name f = Alcotest.test_case name `Quick f in
  Alcotest.run "lwt_interop"
    [
      ( "calls",
        [
          tc "sync call, int range" test_sync;
          tc "string round trip" test_string_roundtrip;
          tc "bytes, options, lists, pairs" test_values;
          tc "64 MiB payloads" test_big_payloads;
          tc "Go values held by OCaml" test_handles;
          tc "OCaml values held by Go" test_opaque;
          tc "bind errors" test_bind_errors;
          tc "calls from another thread" test_wrong_thread;
          tc "Go error" test_go_error;
          tc "typed errors, both ways" test_typed_errors;
          tc "errors whose methods panic" test_errors_whose_methods_panic;
          tc "Go task awaits OCaml" test_go_awaits_ocaml;
          tc "every outcome of an OCaml call" test_outcomes;
          tc "every outcome of a call made as a task resumes" test_outcomes_resumed;
          tc "tasks resumed together call OCaml in order" test_resumed_together;
          tc "shutdown refused in a call made as a task resumes" test_shutdown_in_resumed_call;
          tc "the same, nested in another such call" test_shutdown_in_nested_resumed_call;
          tc "cancelling one call settles another" test_cancel_settles_another;
          tc "OCaml functions registered by name" test_named;
          tc "re-entrant chain, 100 deep each way" test_reentrant_chain;
          tc "Go code on the Lwt thread: Post, OnLoop, Spawn" test_on_loop;
          tc "cancel reaches Go's context" test_cancel;
          tc "2,000 calls in flight; cancel racing answers" test_in_flight_and_races;
          tc "a blocking sync function is reported" test_stall_reported;
          tc "Go's context cancels OCaml's promise" test_go_cancels_ocaml;
        ] );
      ("types", Types.tests);
      ("streams", Streams.tests);
      ( "signals",
        [ tc "Go nil dereference, OCaml Stack_overflow" test_go_nil_dereference; tc "SIGCHLD storm" test_sigchld_storm ] );
      ( "lifecycle",
        [
          tc "nothing held" (test_released Types.looked_up);
          tc "shutdown, restart" test_shutdown_and_restart;
          tc "shutdown stops a stream's producer" Streams.test_shutdown_stops_producers;
          tc "shutdown's grace period" test_shutdown_grace;
          tc "shutdown's grace lets other threads run" test_shutdown_grace_lets_threads_run;
          tc "shutdown from Go" test_shutdown_from_go;
          tc "two shutdowns from Go, racing a post" test_two_shutdowns;
          tc "shutdown unwinds a task that retries" test_shutdown_unwinds_retrying_task;
          tc "shutdown from inside a Go call" test_shutdown_from_a_go_call;
          tc "a sync result survives resumed tasks" test_sync_result_vs_tasks;
          tc "nothing held after restarts" (test_released 0);
        ] );
    ]
