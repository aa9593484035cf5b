(* What is specific to OCaml 5, one case per process as in cases.ml (built
   on OCaml 5 only): domains, which are threads to the bridge. *)

open Lwt.Infix
module I = Lwt_interop

let fail fmt = Printf.ksprintf failwith fmt
let run = Lwt_main.run
let contains s sub = Astring.String.is_infix ~affix:sub s

let round_trips n =
  let add1 = I.bind_sync "test.add1" I.Ty.int I.Ty.int in
  let echo = I.bind "test.echo" I.Ty.string I.Ty.string in
  let call_loop = I.bind "rel.call_loop" I.Ty.int I.Ty.int in
  for i = 1 to n do
    if add1 i <> i + 1 then fail "add1 %d" i
  done;
  run
    ( Lwt_list.iter_s
        (fun i -> echo (string_of_int i) >|= fun r -> if r <> string_of_int i then fail "echo %d" i)
        (List.init (n / 10) Fun.id)
    >>= fun () -> call_loop n >|= fun k -> if k <> n then fail "Go called OCaml %d times, not %d" k n )

let finish () =
  let s = I.stats () in
  if s.calls <> 0 || s.tasks <> 0 then fail "calls=%d tasks=%d" s.calls s.tasks;
  I.shutdown ()

(* Every call from another domain fails clearly; the Lwt thread goes on. *)
let other_domain () =
  I.register_sync "rel.ocaml_add1" I.Ty.int I.Ty.int succ;
  I.init ();
  let add1 = I.bind_sync "test.add1" I.Ty.int I.Ty.int in
  let echo = I.bind "test.echo" I.Ty.string I.Ty.string in
  let from_domain f = Domain.join (Domain.spawn (fun () -> match f () with _ -> "returned" | exception e -> Printexc.to_string e)) in
  List.iter
    (fun (what, f) ->
      let r = from_domain f in
      if not (contains r "not the Lwt thread") then fail "%s from a domain: %s" what r)
    [
      ("a sync call", fun () -> ignore (add1 1));
      ("bind", fun () -> let _echo = I.bind "test.echo" I.Ty.string I.Ty.string in ());
      ("shutdown", fun () -> I.shutdown ());
      ("register", fun () -> I.register "d.x" I.Ty.int I.Ty.int Lwt.return);
    ];
  (match Domain.join (Domain.spawn (fun () -> Lwt.state (echo "x"))) with
  | Lwt.Fail (Failure m) when contains m "not the Lwt thread" -> ()
  | _ -> fail "an async call from a domain was not rejected");
  round_trips 10_000;
  finish ();
  print_endline "ok: calls from another domain fail clearly"

(* The whole bridge in a spawned domain: init, round trips, shutdown. *)
let bridge_in_domain () =
  I.register_sync "rel.ocaml_add1" I.Ty.int I.Ty.int succ;
  Domain.join
    (Domain.spawn (fun () ->
         I.init ();
         round_trips 10_000;
         finish ()));
  print_endline "ok: the bridge runs in a spawned domain"

(* 100,000 round trips while another domain allocates and runs full
   major collections. *)
let allocating_domain () =
  I.register_sync "rel.ocaml_add1" I.Ty.int I.Ty.int succ;
  I.init ();
  let stop = Atomic.make false in
  let d =
    Domain.spawn (fun () ->
        let n = ref 0 in
        while not (Atomic.get stop) do
          ignore (Sys.opaque_identity (List.init 1000 (fun i -> Some (string_of_int i))));
          incr n;
          if !n mod 100 = 0 then Gc.full_major ()
        done;
        !n)
  in
  round_trips 100_000;
  Atomic.set stop true;
  let rounds = Domain.join d in
  finish ();
  Printf.printf "ok: 100,000 round trips beside %d allocation rounds in another domain\n" rounds

(* During shutdown's grace period (kept going by a call that ignores its
   context) another domain goes on allocating: the Lwt thread waits without
   holding its domain's runtime, so the minor collections, which need every
   domain, proceed (a probe found the other domain stalled for the whole
   period). *)
let domain_in_grace () =
  I.init ();
  let never = I.bind "test.never_stops" I.Ty.unit I.Ty.string in
  let stop = Atomic.make false and rounds = Atomic.make 0 in
  let d =
    Domain.spawn (fun () ->
        while not (Atomic.get stop) do
          ignore (Sys.opaque_identity (List.init 1000 (fun i -> Some i)));
          Atomic.incr rounds
        done)
  in
  let p = never () in
  let before = Atomic.get rounds in
  I.shutdown ~grace:0.3 ();
  let during = Atomic.get rounds - before in
  Atomic.set stop true;
  Domain.join d;
  if Lwt.state p = Lwt.Sleep then fail "the call in flight was not rejected";
  (* A round allocates ~3,000 words: a minor collection every ~80 rounds. *)
  if during < 1000 then fail "the other domain made %d allocation rounds in the 0.3 s grace period" during;
  Printf.printf "ok: another domain made %d allocation rounds during the grace period\n" during

(* OCaml 5 installs no SIGSEGV handler: the bridge's is Go's alone, and a
   nil dereference in each kind of Go function is still an error. *)
let nil_dereference () =
  I.init ();
  let nil = "nil pointer dereference" in
  let rejects name p =
    match run p with
    | _ -> fail "%s returned" name
    | exception I.Go_error { message = m; _ } when contains m nil -> ()
  in
  for _ = 1 to 3 do
    rejects "task" (I.bind "test.nil_task" I.Ty.unit I.Ty.int ());
    rejects "goroutine" (I.bind "test.nil_goroutine" I.Ty.unit I.Ty.int ());
    rejects "sync" (I.bind "test.nil_sync" I.Ty.unit I.Ty.int ())
  done;
  finish ();
  print_endline "ok: nil dereferences recovered"

let cases =
  [
    ("other_domain", other_domain);
    ("bridge_in_domain", bridge_in_domain);
    ("allocating_domain", allocating_domain);
    ("nil_dereference", nil_dereference);
    ("domain_in_grace", domain_in_grace);
  ]

let () =
  match Sys.argv with
  | [| _; "list" |] -> List.iter (fun (name, _) -> print_endline name) cases
  | [| _; name |] -> (
      match List.assoc_opt name cases with Some f -> f () | None -> fail "no case %S" name)
  | _ -> fail "usage: ocaml5.exe NAME | list"
