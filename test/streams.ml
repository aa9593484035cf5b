(* Streams both ways, against test/gomain/streams.go: values of any type in
   order, the end, errors from either side, backpressure (bounded buffers)
   and stops from either side. *)

open Lwt.Infix
module I = Lwt_interop

(* The bindings lwt-bindgen wrote (test/go_bindings.ml), but for records of
   Types.user. *)
open Go_bindings

let ints = streams_ints
let producer = streams_producer
let failing = streams_failing
let panicking = streams_panicking
let bad_error = streams_bad_error
let sum = streams_sum
let sum_task = streams_sum_task
let take = streams_take
let read_all = streams_read_all
let identity = streams_identity
let once = streams_once
let blocked = streams_blocked
let late = streams_late
let overflow = streams_overflow
let recv_sync = streams_recv_sync
let rename s = I.bind "streams.rename" I.Ty.(stream Types.user) I.Ty.(stream Types.user) s

let rec wait_until what f n =
  if f () then Lwt.return_unit
  else if n = 0 then Alcotest.failf "still not %s" what
  else Lwt_unix.sleep 0.005 >>= fun () -> wait_until what f (n - 1)

let test_go_to_ocaml () =
  Lwt_main.run
    ( ints 10_000 16 >>= Lwt_stream.to_list >|= fun xs ->
      Alcotest.(check (list int)) "every value, in order" (List.init 10_000 Fun.id) xs );
  Lwt_main.run
    ( ints 0 1 >>= Lwt_stream.to_list >|= fun xs -> Alcotest.(check (list int)) "an empty stream" [] xs );
  Alcotest.(check (pair int string)) "the producer ended" (0, "<nil>") (producer ())

(* The producer runs ahead of a reader that stops reading by no more than
   Go's buffer and OCaml's batch, each of [capacity] values. *)
let test_backpressure () =
  let capacity = 8 in
  Lwt_main.run
    ( ints (-1) capacity >>= fun s ->
      Lwt_stream.nget 5 s >>= fun first ->
      Alcotest.(check (list int)) "the first values" [ 0; 1; 2; 3; 4 ] first;
      Lwt_unix.sleep 0.05 >>= fun () ->
      let sent, ended = producer () in
      Alcotest.(check string) "the producer waits" "" ended;
      if sent > 5 + (2 * capacity) then Alcotest.failf "%d values sent for 5 read: the buffers are not bounded" sent;
      Lwt_stream.nget 100 s >|= fun next ->
      Alcotest.(check (list int)) "the rest, in order" (List.init 100 (fun i -> i + 5)) next );
  (* The reader dropped: OCaml's GC stops the producer. *)
  Gc.full_major ();
  Lwt_main.run (wait_until "stopped" (fun () -> snd (producer ()) <> "") 1000);
  Alcotest.(check string) "the producer was stopped" "lwt: the stream's reader stopped" (snd (producer ()));
  (* A producer waiting for something else to send stops too (Done). *)
  let[@inline never] drop () = ignore (Lwt_main.run (late 60_000)) in
  drop ();
  Gc.full_major ();
  Lwt_main.run (wait_until "stopped while waiting" (fun () -> snd (producer ()) <> "") 1000);
  Alcotest.(check string) "the waiting producer was stopped" "stopped by the reader" (snd (producer ()));
  (* A detached reader (as a server's handler is), its read pending while
     OCaml's GC runs: in Lwt, what waits for a promise is reachable only
     from whoever settles it, here the bridge's call into Go, which must
     hold the stream and its reader. *)
  let got = ref None in
  let[@inline never] read_detached () =
    Lwt_main.run (late 100 >|= fun s -> Lwt.async (fun () -> Lwt_stream.to_list s >|= fun l -> got := Some l))
  in
  read_detached ();
  Lwt_main.run
    ( Lwt_unix.sleep 0.02 >>= fun () ->
      Gc.full_major ();
      Gc.full_major ();
      wait_until "read after a GC" (fun () -> !got <> None) 1000 );
  Alcotest.(check (option (list int))) "what came after a GC" (Some [ 1; 2 ]) !got

let test_go_errors () =
  let read s =
    let got = ref [] in
    Lwt.catch
      (fun () -> Lwt_stream.iter (fun x -> got := x :: !got) s >|= fun () -> (List.rev !got, None))
      (fun e -> Lwt.return (List.rev !got, Some e))
  in
  Lwt_main.run
    ( failing 3 false >>= fun s ->
      read s >>= fun (got, e) ->
      Alcotest.(check (list string)) "the values before the error" [ "0"; "1"; "2" ] got;
      (match e with
      | Some (I.Go_error { message; _ }) -> Alcotest.(check string) "the error" "the disk is on fire" message
      | _ -> Alcotest.fail "no Go_error");
      Lwt_stream.get s >|= fun next -> Alcotest.(check (option string)) "ended by the error" None next );
  (try I.register_exception "not_found" Not_found with Invalid_argument _ -> () (* by test_typed_errors *));
  Lwt_main.run
    ( failing 2 true >>= read >|= fun (got, e) ->
      Alcotest.(check (list string)) "the values" [ "0"; "1" ] got;
      Alcotest.(check bool) "the registered exception" true (e = Some Not_found) );
  Lwt_main.run
    ( overflow () >>= read >|= fun (got, e) ->
      Alcotest.(check (list int)) "the values before one past 63 bits" [ 1; 2 ] got;
      match e with
      | Some (I.Go_error { message; _ }) when Astring.String.is_infix ~affix:"does not fit OCaml's 63-bit int" message -> ()
      | _ -> Alcotest.fail "no Go_error for the value past 63 bits" );
  Lwt_main.run
    ( panicking () >>= fun s ->
      Lwt_stream.get s >>= fun first ->
      Alcotest.(check (option int)) "the value before the panic" (Some 1) first;
      Lwt.catch
        (fun () -> Lwt_stream.get s >|= fun _ -> Alcotest.fail "no error")
        (function
          | I.Go_error { message; stack; _ } ->
              Alcotest.(check string) "the panic" "panic: the producer panicked" message;
              Alcotest.(check bool) "with its stack" true (stack <> "");
              Lwt.return_unit
          | e -> raise e) );
  (* An error whose Is method panics, in the producer's goroutine too. *)
  Lwt_main.run
    ( bad_error () >>= read >|= fun (got, e) ->
      Alcotest.(check (list int)) "the value before the error" [ 1 ] got;
      match e with
      | Some (I.Go_error { message; _ })
        when Astring.String.is_infix ~affix:"a method of the error (main.badError) panicked: Is panics" message ->
          ()
      | _ -> Alcotest.fail "no Go_error for the error whose Is panics" )

let test_ocaml_to_go () =
  let n = 20_000 in
  let expected = n * (n - 1) / 2 in
  Lwt_main.run
    ( sum (Lwt_stream.of_list (List.init n Fun.id)) >|= Alcotest.(check int) "a goroutine read it all" expected );
  Lwt_main.run
    ( sum_task (Lwt_stream.of_list (List.init n Fun.id)) >|= Alcotest.(check int) "a loop task read it all" expected );
  Lwt_main.run (sum (Lwt_stream.of_list []) >|= Alcotest.(check int) "an empty stream" 0);
  (* A producer that pushes as Go reads, waiting while its bounded buffer
     is full. *)
  Lwt_main.run
    (let s, push = Lwt_stream.create_bounded 4 in
     let produce = Lwt_list.iter_s (fun i -> push#push i) (List.init n Fun.id) >|= fun () -> push#close in
     Lwt.both (sum s) produce >|= fun (total, ()) -> Alcotest.(check int) "a bounded push" expected total);
  (* Values that take time to come: one at a time. *)
  Lwt_main.run
    (let i = ref 0 in
     let slow = Lwt_stream.from (fun () -> Lwt.pause () >|= fun () -> incr i; if !i > 50 then None else Some !i) in
     sum slow >|= Alcotest.(check int) "a slow producer" (50 * 51 / 2))

let test_ocaml_stops_and_errors () =
  (* Go stops reading: the producer is not called again past what Go read
     ahead. *)
  let calls = ref 0 in
  let endless = Lwt_stream.from_direct (fun () -> incr calls; Some (string_of_int !calls)) in
  Lwt_main.run
    ( take endless 3 >>= fun got ->
      Alcotest.(check (list string)) "Go read 3" [ "1"; "2"; "3" ] got;
      let after = !calls in
      if after > 3 + 64 then Alcotest.failf "%d values made for 3 read: Go reads ahead too far" after;
      Lwt_unix.sleep 0.02 >|= fun () -> Alcotest.(check int) "not read after Close" after !calls );
  (* The OCaml stream raises: Go gets what came before, then the exception. *)
  let i = ref 0 in
  let failing = Lwt_stream.from (fun () -> incr i; if !i > 2 then failwith "no more" else Lwt.return_some (string_of_int !i)) in
  Lwt_main.run
    ( read_all failing >|= fun (got, err) ->
      Alcotest.(check (list string)) "the values before" [ "1"; "2" ] got;
      Alcotest.(check string) "the exception" "OCamlError Failure: ocaml: Failure(\"no more\")" err );
  (* It fails later, while Go reads ahead: not forgotten. *)
  let i = ref 0 in
  let late =
    Lwt_stream.from (fun () ->
        incr i;
        if !i = 3 then Lwt.pause () >>= fun () -> failwith "late"
        else if !i > 5 then Lwt.return_none
        else Lwt.return_some (string_of_int !i))
  in
  Lwt_main.run
    ( read_all late >|= fun (got, err) ->
      Alcotest.(check (list string)) "the values before a late failure" [ "1"; "2" ] got;
      Alcotest.(check string) "the late exception" "OCamlError Failure: ocaml: Failure(\"late\")" err );
  (* Recv where it would have to wait on the Lwt thread. *)
  let s, _push = Lwt_stream.create () in
  let err = recv_sync s in
  if not (Astring.String.is_infix ~affix:"would block" err) then Alcotest.failf "Recv in a sync function: %s" err

let test_any_type_through_go () =
  let users = List.init 300 (fun i -> { Types.plain with id = i; name = "u" ^ string_of_int i }) in
  Lwt_main.run
    ( rename (Lwt_stream.of_list users) >>= Lwt_stream.to_list >|= fun got ->
      List.iter2
        (fun (u : Types.user) (g : Types.user) ->
          Alcotest.(check string) "renamed" ("renamed " ^ u.name) g.name;
          Alcotest.(check bool) "the rest unchanged" true ({ g with name = u.name } = u))
        users got );
  Lwt_main.run
    ( Lwt_stream.to_list (identity (Lwt_stream.of_list [ 1; 2; 3 ])) >|= fun got ->
      Alcotest.(check (list int)) "OCaml's stream back through Go" [ 1; 2; 3 ] got );
  ignore (once ());
  match once () with
  | _ -> Alcotest.fail "crossed twice"
  | exception I.Go_error { message; _ } ->
      Alcotest.(check string) "once" "lwt: a Stream[int] crosses to OCaml once: it has one reader" message

(* A producer waiting in Send since before its stream crossed to OCaml
   still sees the shutdown. In the lifecycle group: it restarts the
   bridge. *)
let test_shutdown_stops_producers () =
  let s = Lwt_main.run (blocked ()) in
  I.shutdown ();
  I.init ();
  Lwt_main.run (wait_until "stopped by shutdown" (fun () -> snd (producer ()) <> "") 1000);
  Alcotest.(check string) "the producer" "lwt: shut down" (snd (producer ()));
  ignore (Sys.opaque_identity s)

let tests =
  let tc name f = Alcotest.test_case name `Quick f in
  [
    tc "Go to OCaml" test_go_to_ocaml;
    tc "backpressure, and OCaml's GC stops Go's producer" test_backpressure;
    tc "Go's errors and panics" test_go_errors;
    tc "OCaml to Go" test_ocaml_to_go;
    tc "Go stops reading; OCaml's exceptions" test_ocaml_stops_and_errors;
    tc "records through Go and back" test_any_type_through_go;
  ]
