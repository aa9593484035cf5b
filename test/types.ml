(* Every kind of value both ways, against test/gomain/types.go: OCaml
   writes, Go reads (and says what it read), Go writes, OCaml reads. *)

open Lwt.Infix
module I = Lwt_interop

type labelled = { label : string; points : int list }
type shape = Circle of float | Rect of float * float | Empty | Labelled of labelled

type user = {
  id : int;
  name : string;
  score : float;
  tags : string list;
  email : string option;
  small : int32;
  big : int64;
  initial : char;
  shapes : shape array;
  status : (int, string) result;
  where : int * string * bool;
  raw : bytes;
  unit : unit;
  scores : float array;
}

let labelled =
  I.Ty.(
    record "labelled" (fun label points -> { label; points })
    |+ field "label" string (fun l -> l.label)
    |+ field "points" (list int) (fun l -> l.points)
    |> sealr)

let shape =
  I.Ty.(
    variant "shape" (fun circle rect empty labelled -> function
      | Circle r -> circle r | Rect (w, h) -> rect (w, h) | Empty -> empty | Labelled l -> labelled l)
    |~ case1 "Circle" float (fun r -> Circle r)
    |~ case1 "Rect" (pair float float) (fun (w, h) -> Rect (w, h))
    |~ case0 "Empty" Empty
    |~ case1 "Labelled" labelled (fun l -> Labelled l)
    |> sealv)

let user =
  I.Ty.(
    record "user" (fun id name score tags email small big initial shapes status where raw unit scores ->
        { id; name; score; tags; email; small; big; initial; shapes; status; where; raw; unit; scores })
    |+ field "id" int (fun u -> u.id)
    |+ field "name" string (fun u -> u.name)
    |+ field "score" float (fun u -> u.score)
    |+ field "tags" (list string) (fun u -> u.tags)
    |+ field "email" (option string) (fun u -> u.email)
    |+ field "small" int32 (fun u -> u.small)
    |+ field "big" int64 (fun u -> u.big)
    |+ field "initial" char (fun u -> u.initial)
    |+ field "shapes" (array shape) (fun u -> u.shapes)
    |+ field "status" (result int string) (fun u -> u.status)
    |+ field "where" (tuple3 int string bool) (fun u -> u.where)
    |+ field "raw" bytes (fun u -> u.raw)
    |+ field "unit" unit (fun u -> u.unit)
    |+ field "scores" (array float) (fun u -> u.scores)
    |> sealr)

let edge =
  {
    id = max_int;
    name = "";
    score = neg_infinity;
    tags = [ ""; "\000"; "\xc3\xa9" ];
    email = Some "a\000b";
    small = Int32.min_int;
    big = Int64.min_int;
    initial = '\255';
    shapes = [| Circle 1.5; Rect (-0., max_float); Empty; Labelled { label = "l"; points = [ min_int; 0 ] } |];
    status = Error "no";
    where = (-1, "w", true);
    raw = Bytes.of_string "\000\001\255";
    unit = ();
    scores = [| 0.5; epsilon_float; 5e-324 |];
  }

let plain =
  {
    id = 0; name = "x"; score = 1.; tags = []; email = None; small = 0l; big = 0L; initial = 'a';
    shapes = [||]; status = Ok 1; where = (0, "", false); raw = Bytes.empty; unit = (); scores = [||];
  }

let same name a b = if a <> b then Alcotest.failf "%s: the value changed" name

let check_invalid_arg name sub f =
  match f () with
  | _ -> Alcotest.failf "%s: bound" name
  | exception Invalid_argument m ->
      if not (Astring.String.is_infix ~affix:sub m) then Alcotest.failf "%s: %s" name m
  | exception e -> Alcotest.failf "%s: unexpected %s" name (Printexc.to_string e)

let test_records_and_variants () =
  let echo = I.bind_sync "types.echo_user" user user in
  List.iter (fun u -> same "echo" u (echo u)) [ edge; plain ];
  let describe = I.bind_sync "types.describe_user" user I.Ty.string in
  Alcotest.(check string)
    "what Go read"
    "id=4611686018427387903 name=\"\" score=-Inf tags=[\"\" \"\\x00\" \"é\"] email=\"a\\x00b\" \
     small=-2147483648 big=-9223372036854775808 initial=255 shapes=[main.Circle{R:1.5} \
     main.Rect{W:-0 H:1.7976931348623157e+308} main.Empty{} &{Label:l Points:[-4611686018427387904 0]} ] \
     status={Ok:0 Error:no IsError:true} where={First:-1 Second:w Third:true} raw=[0 1 255] \
     scores=[0.5 2.220446049250313e-16 5e-324]"
    (describe edge);
  let made = I.bind_sync "types.make_user" I.Ty.unit user () in
  same "what Go wrote"
    {
      id = 7; name = "gopher"; score = 0.25; tags = [ "go" ]; email = Some "g@o"; small = -2l;
      big = Int64.shift_left 1L 62; initial = 'G';
      shapes = [| Rect (1., 2.); Labelled { label = "p"; points = [ 3 ] }; Empty |];
      status = Ok 5; where = (1, "x", true); raw = Bytes.of_string "r"; unit = (); scores = [| 1.; 2. |];
    }
    made;
  let echo_shape = I.bind_sync "types.echo_shape" shape shape in
  List.iter (fun s -> same "a variant alone" s (echo_shape s)) [ Empty; Circle 2.; Rect (1., 2.) ];
  (* A goroutine function: the result settles a promise. *)
  let echo_users = I.bind "types.echo_users" (I.Ty.list user) (I.Ty.list user) in
  let many = List.init 500 (fun i -> { edge with id = i; tags = List.init (i mod 7) string_of_int }) in
  Lwt_main.run (echo_users many >|= same "500 users through a goroutine" many)

let test_every_type () =
  let echo name ty v = same name v (I.bind_sync name ty ty v) in
  echo "types.echo_char" I.Ty.char '\000';
  echo "types.echo_char" I.Ty.char '\255';
  echo "types.echo_id" I.Ty.int min_int;
  echo "types.echo_scalars" I.Ty.(tuple4 int32 int64 char (array float))
    (Int32.max_int, Int64.max_int, 'z', [| infinity; -0. |]);
  echo "types.echo_results" I.Ty.(list (result (option string) (list shape)))
    [ Ok None; Ok (Some ""); Error []; Error [ Empty; Circle 0. ] ];
  let deep = [ [ [ [ [ [ [ [ 1; 2 ] ] ] ] ] ] ]; [] ] in
  echo "types.echo_deep" I.Ty.(list (list (list (list (list (list (list (list int)))))))) deep;
  echo "types.echo_options" I.Ty.(option (option int)) None;
  echo "types.echo_options" I.Ty.(option (option int)) (Some None);
  echo "types.echo_options" I.Ty.(option (option int)) (Some (Some 3));
  (* Go's nil slice is []. *)
  echo "types.echo_results" I.Ty.(list (result (option string) (list shape))) []

(* The OCaml functions Go looks up here, which the bridge holds until
   shutdown. *)
let looked_up = 4

let test_go_calls_ocaml () =
  I.register "types.ocaml_echo_user" user user (fun u -> Lwt.pause () >|= fun () -> u);
  Lwt_main.run (I.bind "types.ocaml_echoes" I.Ty.unit I.Ty.string () >|= Alcotest.(check string) "Go's user came back" "same")

(* Go functions as values, each kind, released by OCaml's GC; OCaml plain
   functions as values. *)
let test_functions_as_values () =
  I.register "types.ocaml_double" I.Ty.int I.Ty.int (fun x -> Lwt.pause () >|= fun () -> 2 * x);
  let adder = I.bind_sync "callbacks.adder" I.Ty.(pair string int) I.Ty.(func int int) in
  let sync_adder = I.bind_sync "callbacks.adder" I.Ty.(pair string int) I.Ty.(sync_func int int) in
  let handles_before = (I.stats ()).handles in
  Lwt_main.run
    (Lwt_list.iter_s
       (fun (kind, want) -> adder (kind, 10) 5 >|= Alcotest.(check int) kind want)
       [ ("goroutine", 15); ("task", 20); ("sync", 15) ]);
  let add10 = sync_adder ("sync", 10) in
  Alcotest.(check int) "a SyncCallback as a plain function" 17 (add10 7);
  (match add10 (-1) with
  | _ -> Alcotest.fail "no error"
  | exception I.Go_error { message; _ } -> Alcotest.(check string) "its error" "negative: -1" message);
  (match sync_adder ("goroutine", 1) with
  | f -> Alcotest.failf "a goroutine Callback as a plain function: %d" (f 0)
  | exception I.Go_error { message; _ } ->
      Alcotest.(check bool) "says why" true (Astring.String.is_infix ~affix:"made by SyncCallback" message));
  (match adder ("none", 0) with
  | f -> ignore (f 0 : int Lwt.t); Alcotest.fail "a nil Callback"
  | exception I.Go_error { message; _ } ->
      Alcotest.(check bool) "a nil Callback" true (Astring.String.is_infix ~affix:"nil *Callback" message));
  (* Lwt.cancel reaches the Callback's context. *)
  let waiter = I.bind_sync "callbacks.waiter" I.Ty.unit I.Ty.(func unit string) () in
  let p = waiter () in
  Lwt.cancel p;
  let last = I.bind_sync "test.last_err" I.Ty.unit I.Ty.string in
  let rec poll n =
    match last () with
    | "callback: context canceled" -> Lwt.return_unit
    | _ when n = 0 -> Alcotest.fail "the Callback's context was not cancelled"
    | _ -> Lwt_unix.sleep 0.01 >>= fun () -> poll (n - 1)
  in
  Lwt_main.run (poll 300);
  (* OCaml plain functions and closures taking Go closures, the other way. *)
  let apply_sync = I.bind_sync "callbacks.apply_sync" I.Ty.(sync_func int int) I.Ty.int in
  Alcotest.(check int) "Go calls a plain OCaml function in a sync function" 21 (apply_sync succ);
  let hand_over = I.bind "callbacks.hand_over" I.Ty.(func (func int int) int) I.Ty.int in
  Lwt_main.run (hand_over (fun triple -> triple 4) >|= Alcotest.(check int) "OCaml calls the Go closure Go gave it" 12);
  (* Every Callback that crossed is freed once OCaml's GC collects its closure. *)
  let rec settle n =
    Gc.full_major ();
    if (I.stats ()).handles <= handles_before then Lwt.return_unit
    else if n = 0 then Alcotest.failf "%d handles still live" ((I.stats ()).handles - handles_before)
    else Lwt_unix.sleep 0.01 >>= fun () -> settle (n - 1)
  in
  Lwt_main.run (settle 100)

(* Promises as values: OCaml's awaited by Go, Go's awaited by OCaml, and
   cancellation from either side reaching the other. *)
let test_promises_as_values () =
  let await = I.bind "promises.await" I.Ty.(promise int) I.Ty.string in
  let p, u = Lwt.wait () in
  let r = await p in
  Lwt.wakeup_later u 41;
  Alcotest.(check string) "Go awaited OCaml's promise" "42 <nil>" (Lwt_main.run r);
  Alcotest.(check string) "an OCaml promise already failed" "1 ocaml: Not_found" (Lwt_main.run (await (Lwt.fail Not_found)));
  let cancelled = ref false in
  let p, _ = Lwt.task () in
  Lwt.on_cancel p (fun () -> cancelled := true);
  let cancel = I.bind "promises.cancel" I.Ty.(promise int) I.Ty.string in
  Alcotest.(check string) "Go's Cancel" "context canceled canceled=true" (Lwt_main.run (cancel p));
  Alcotest.(check bool) "is Lwt.cancel of OCaml's promise" true !cancelled;
  let later = I.bind_sync "promises.later" I.Ty.string I.Ty.(promise string) in
  Alcotest.(check string) "OCaml awaited Go's promise" "go!" (Lwt_main.run (later "go"));
  (* Registered by the calls group's typed-errors test, unless run alone. *)
  (try I.register_exception "not_found" Not_found with Invalid_argument _ -> ());
  (match Lwt_main.run (I.bind_sync "promises.failed" I.Ty.unit I.Ty.(promise string) ()) with
  | _ -> Alcotest.fail "resolved"
  | exception Not_found -> ());
  let never_cancelled = ref false in
  I.register "types.never" I.Ty.unit I.Ty.int (fun () ->
      let p, _ = Lwt.task () in
      Lwt.on_cancel p (fun () -> never_cancelled := true);
      p);
  let q = I.bind_sync "promises.of_call" I.Ty.unit I.Ty.(promise int) () in
  Lwt_main.run (Lwt.pause ());
  Lwt.cancel q;
  let rec poll n =
    if !never_cancelled then Lwt.return_unit
    else if n = 0 then Alcotest.fail "OCaml's Lwt.cancel of Go's promise did not reach the call behind it"
    else Lwt_unix.sleep 0.01 >>= fun () -> poll (n - 1)
  in
  Lwt_main.run (poll 300)

(* Functions of several arguments, both ways, each kind; closures and
   promises among the arguments. *)
let test_several_arguments () =
  let describe = I.bind_fn_sync "args.describe" I.Ty.(int @-> string @-> bool @-> returning string) in
  Alcotest.(check string) "three arguments, sync" "7 \"a\\x00b\" true" (describe 7 "a\000b" true);
  let describe_lwt = I.bind_fn "args.describe" I.Ty.(int @-> string @-> bool @-> returning string) in
  Alcotest.(check string) "bound with bind_fn" "-1 \"\" false" (Lwt_main.run (describe_lwt (-1) "" false));
  let join = I.bind_fn "args.join" I.Ty.(string @-> list string @-> returning string) in
  let partial = join ", " in
  Alcotest.(check string) "partially applied" "a, b, c" (Lwt_main.run (partial [ "a"; "b"; "c" ]));
  let apply = I.bind_fn "args.apply" I.Ty.(func int int @-> int @-> returning int) in
  Alcotest.(check int) "a closure among them" 42 (Lwt_main.run (apply (fun x -> Lwt.return (x * 2)) 21));
  let sum = I.bind_fn "args.sum" I.Ty.(promise int @-> promise int @-> user @-> int @-> returning int) in
  let p, u = Lwt.wait () in
  let r = sum p (Lwt.return 2) { plain with id = 30 } 10 in
  Lwt.wakeup_later u 100;
  Alcotest.(check int) "promises and a record among them" 142 (Lwt_main.run r);
  I.register_fn "args.ocaml_show" I.Ty.(int @-> string @-> list int @-> returning string) (fun n s l ->
      Lwt.return (Printf.sprintf "%d %s [%s]" n s (String.concat ";" (List.map string_of_int l))));
  Alcotest.(check string) "Go calls OCaml with three" "1 two [3;4]"
    (Lwt_main.run (I.bind "args.call_ocaml" I.Ty.unit I.Ty.string ()));
  check_invalid_arg "one argument too many" "OCaml's function takes 4 arguments, Go's 3" (fun () ->
      I.bind_fn_sync "args.describe" I.Ty.(int @-> string @-> bool @-> int @-> returning string));
  check_invalid_arg "a wrong argument" "argument 2: OCaml int is not Go string" (fun () ->
      I.bind_fn_sync "args.describe" I.Ty.(int @-> int @-> bool @-> returning string));
  check_invalid_arg "more arguments than Go takes" "takes 2 to 4 (Go's lwt.Args2 to Args4)" (fun () ->
      I.bind_fn_sync "args.describe" I.Ty.(int @-> int @-> int @-> int @-> int @-> returning string))

(* The module lwt-bindgen wrote from test/gomain: its types match Go's
   (each binding checks them), and its functions work. *)
let test_generated_bindings () =
  let module G = Go_bindings in
  let u = G.types_make_user () in
  Alcotest.(check string) "a Go record, as the generated type" "gopher" u.G.name;
  (match u.G.shapes with
  | [ G.Rect (1., 2.); G.Labelled ("p", [ 3L ]); G.Empty ] -> ()
  | _ -> Alcotest.fail "the shapes");
  if G.types_echo_user u <> u then Alcotest.fail "the generated record's round trip";
  Alcotest.(check string) "several arguments" "1 \"x\" true" (G.args_describe 1L "x" true);
  Alcotest.(check int64) "a closure argument" 10L (Lwt_main.run (G.args_apply (fun x -> Lwt.return (Int64.mul x 5L)) 2L));
  (* Every function of test/gomain, bound: each type matches Go's. *)
  G.bind_all ()

let invalid sub = function Invalid_argument m -> Astring.String.is_infix ~affix:sub m | _ -> false

let check_invalid name sub f =
  match f () with
  | _ -> Alcotest.failf "%s: bound" name
  | exception e -> if not (invalid sub e) then Alcotest.failf "%s: unexpected %s" name (Printexc.to_string e)

(* What each side declares must match: a mismatch names both sides. *)
let test_mismatches () =
  let short =
    I.Ty.(record "short" (fun id name -> (id, name)) |+ field "id" int fst |+ field "name" string snd |> sealr)
  in
  check_invalid "record missing fields" "Go field Score has no OCaml field" (fun () ->
      I.bind_sync "types.echo_user" short short);
  let renamed =
    I.Ty.(record "user" (fun id -> id) |+ field "ident" int Fun.id |> sealr)
  in
  check_invalid "unknown field" "OCaml field ident has no Go field" (fun () ->
      I.bind_sync "types.echo_user" renamed renamed);
  let fewer =
    I.Ty.(variant "shape" (fun e -> function _ -> e) |~ case0 "Empty" () |> sealv)
  in
  check_invalid "constructor missing" "has no OCaml constructor" (fun () ->
      I.bind_sync "types.echo_shape" fewer fewer);
  let wrong_arg =
    I.Ty.(
      variant "shape" (fun c r e l -> function `C x -> c x | `R x -> r x | `E -> e | `L x -> l x)
      |~ case1 "Circle" string (fun x -> `C x)
      |~ case1 "Rect" (pair float float) (fun x -> `R x)
      |~ case0 "Empty" `E
      |~ case1 "Labelled" labelled (fun x -> `L x)
      |> sealv)
  in
  check_invalid "constructor's argument" "in constructor Circle of shape (Go main.Circle): OCaml string is not Go float64"
    (fun () -> I.bind_sync "types.echo_shape" wrong_arg wrong_arg);
  check_invalid "int32 for an int" "OCaml int32 is not Go main.UserID" (fun () ->
      I.bind_sync "types.echo_id" I.Ty.int32 I.Ty.int32);
  (match I.Ty.(list handle) with
  | _ -> Alcotest.fail "a list of handles"
  | exception Invalid_argument m ->
      Alcotest.(check bool) "a handle inside a list" true
        (Astring.String.is_infix ~affix:"crosses only as an argument or a result" m));
  (match I.Ty.(record "r" Fun.id |+ field "not a name" int Fun.id |> sealr) with
  | _ -> Alcotest.fail "a field named with a space"
  | exception Invalid_argument _ -> ());
  (match I.Ty.(record "r" (fun a b -> (a, b)) |+ field "x" int fst |+ field "x" string snd |> sealr) with
  | _ -> Alcotest.fail "two fields of one name"
  | exception Invalid_argument _ -> ());
  (match I.Ty.(variant "v" (fun a b -> function `A -> a | `B -> b) |~ case0 "A" `A |~ case0 "A" `B |> sealv) with
  | _ -> Alcotest.fail "two constructors of one name"
  | exception Invalid_argument _ -> ());
  (* A value that cannot be written (its getter raises) rejects the call's
     promise, as a Go error would. *)
  let raising =
    I.Ty.(
      variant "shape" (fun _ _ _ _ _ -> raise Exit)
      |~ case1 "Circle" float (fun r -> Circle r)
      |~ case1 "Rect" (pair float float) (fun (w, h) -> Rect (w, h))
      |~ case0 "Empty" Empty
      |~ case1 "Labelled" labelled (fun l -> Labelled l)
      |> sealv)
  in
  let echo_async = I.bind "types.echo_shape_async" raising raising in
  match echo_async Empty with
  | p -> (
      match Lwt.state p with
      | Lwt.Fail Exit -> ()
      | _ -> Alcotest.fail "a getter that raised did not reject the promise")
  | exception e -> Alcotest.failf "a getter that raised: %s, not a rejected promise" (Printexc.to_string e)

(* Values decoded while the GC runs: many round trips of lists of records,
   each from a fresh heap state. *)
let test_gc_stress () =
  let echo = I.bind_sync "types.echo_user" user user in
  let echo_users = I.bind "types.echo_users" (I.Ty.list user) (I.Ty.list user) in
  for i = 1 to 2_000 do
    let u = { edge with id = i; name = String.make (i mod 300) 'n' } in
    same "echo under GC" u (echo u);
    if i mod 250 = 0 then Gc.full_major ()
  done;
  let batch = List.init 100 (fun i -> { plain with id = i; tags = [ string_of_int i ] }) in
  Lwt_main.run
    (Lwt_list.iter_p (fun _ -> echo_users batch >|= same "a batch" batch) (List.init 50 Fun.id))

let tests =
  let tc name f = Alcotest.test_case name `Quick f in
  [
    tc "records and variants, both ways" test_records_and_variants;
    tc "every type, edge values" test_every_type;
    tc "Go calls OCaml with a record" test_go_calls_ocaml;
    tc "functions as values, both ways" test_functions_as_values;
    tc "promises as values, both ways" test_promises_as_values;
    tc "functions of several arguments" test_several_arguments;
    tc "the bindings lwt-bindgen generated" test_generated_bindings;
    tc "bind-time mismatches" test_mismatches;
    tc "GC stress" test_gc_stress;
  ]
