exception Go_error of { message : string; go_type : string; stack : string }
exception Closed

let () =
  Printexc.register_printer (function
    | Go_error { message; _ } -> Some (Printf.sprintf "Lwt_interop.Go_error(%S)" message)
    | _ -> None)

(* ---- Errors as they cross (errors.go is Go's side) ---------------------- *)

(* The OCaml exceptions registered for Go errors (lwt.RegisterError), by
   name. *)
let exceptions : (string, exn) Hashtbl.t = Hashtbl.create 8

(* A Go error, as Go writes it: which exception it becomes (kind: 0
   Go_error, 1 Closed, 2 the exception registered as name, 3 Lwt.Canceled)
   and Go_error's fields. *)
type go_error = { kind : int; name : string; go_type : string; stack : string; message : string }

let go_error =
  Ty.(
    record "go_error" (fun kind name go_type stack message -> { kind; name; go_type; stack; message })
    |+ field "kind" int (fun (e : go_error) -> e.kind)
    |+ field "name" string (fun (e : go_error) -> e.name)
    |+ field "type" string (fun (e : go_error) -> e.go_type)
    |+ field "stack" string (fun (e : go_error) -> e.stack)
    |+ field "message" string (fun (e : go_error) -> e.message)
    |> sealr)

let go_exn (b : bytes) =
  match go_error.of_go (Ty.wire b) with
  | { kind = 1; _ } -> Closed
  | { kind = 2; name; _ } when Hashtbl.mem exceptions name -> Hashtbl.find exceptions name
  | { kind = 3; _ } -> Lwt.Canceled
  | { message; go_type; stack; _ } -> Go_error { message; go_type; stack }
  | exception _ ->
      let message =
        if Bytes.length b = 0 then "lwt: a Go error too large for OCaml's heap (Out_of_memory)"
        else "lwt: a Go error that OCaml could not read (are lwt_interop and the Go package lwt of one version?)"
      in
      Go_error { message; go_type = ""; stack = "" }

(* An OCaml exception, as Go reads it (OCamlError). *)
type ocaml_error = {
  text : string;  (** Printexc's, or a Go_error's message *)
  exn_name : string;
  args : string list;
  registered : string;  (** the name it is registered under, or "" *)
  is_go_error : bool;
  go_type : string;
  go_stack : string;
  backtrace : string;
}

let ocaml_error =
  Ty.(
    record "ocaml_error" (fun text exn_name args registered is_go_error go_type go_stack backtrace ->
        { text; exn_name; args; registered; is_go_error; go_type; go_stack; backtrace })
    |+ field "text" string (fun (e : ocaml_error) -> e.text)
    |+ field "name" string (fun (e : ocaml_error) -> e.exn_name)
    |+ field "args" (list string) (fun (e : ocaml_error) -> e.args)
    |+ field "registered" string (fun (e : ocaml_error) -> e.registered)
    |+ field "go_error" bool (fun (e : ocaml_error) -> e.is_go_error)
    |+ field "go_type" string (fun (e : ocaml_error) -> e.go_type)
    |+ field "go_stack" string (fun (e : ocaml_error) -> e.go_stack)
    |+ field "backtrace" string (fun (e : ocaml_error) -> e.backtrace)
    |> sealr)

(* The arguments of an exception, printed as Printexc prints them (which
   is how it reads them too). *)
let exn_args (e : exn) =
  let r = Obj.repr e in
  if Obj.tag r <> 0 then []
  else
    List.init
      (Obj.size r - 1)
      (fun i ->
        let f = Obj.field r (i + 1) in
        if Obj.is_int f then string_of_int (Obj.obj f)
        else if Obj.tag f = Obj.string_tag then (Obj.obj f : string)
        else if Obj.tag f = Obj.double_tag then string_of_float (Obj.obj f)
        else "_")

let registered_name e =
  let id = Printexc.exn_slot_id e in
  Hashtbl.fold (fun name x found -> if Printexc.exn_slot_id x = id then name else found) exceptions ""

let ocaml_error_of e backtrace =
  match e with
  | Go_error { message; go_type; stack } ->
      {
        text = message; exn_name = "Lwt_interop.Go_error"; args = [ message ]; registered = "";
        is_go_error = true; go_type; go_stack = stack; backtrace;
      }
  | e ->
      (* Lwt defines Canceled in an inner module, whose name varies with
         versions. *)
      let canceled = e = Lwt.Canceled in
      {
        text = (if canceled then "Lwt.Canceled" else Printexc.to_string e);
        exn_name = (if canceled then "Lwt.Canceled" else Printexc.exn_slot_name e);
        args = exn_args e;
        registered = registered_name e; is_go_error = false; go_type = ""; go_stack = ""; backtrace;
      }

let () =
  Callback.register "lwt_interop.go_exn" go_exn;
  Callback.register "lwt_interop.error_codes" (go_error.code ^ "\n" ^ ocaml_error.code)

(* Called by stubs.c on behalf of Go, on the Lwt thread. *)

external go_resolve : int -> Ty.wire -> unit = "lwt_interop_resolve"
external go_reject : int -> Ty.wire -> unit = "lwt_interop_reject"

(* The promises Go settled during its last entry, whose callbacks run once
   Go has returned to OCaml: no Lwt callback runs inside a Go frame because
   of Go (so a callback may call shutdown, or raise, freely). Every external
   that enters Go is followed by [run_settled]. *)
type settled = Value of Ty.wire Lwt.u * Ty.wire | Error of Ty.wire Lwt.u * exn

(* A ring of the settlements not yet run: no allocation per settlement but
   its own block. *)
let no_settlement = Error (snd (Lwt.wait ()), Exit)
let ring = ref (Array.make 16 no_settlement)
let first = ref 0
let pending = ref 0

let push_settled x =
  let r = !ring in
  let n = Array.length r in
  if !pending = n then (
    ring := Array.init (2 * n) (fun i -> if i < n then r.((!first + i) mod n) else no_settlement);
    first := 0);
  !ring.((!first + !pending) mod Array.length !ring) <- x;
  incr pending

external on_lwt_thread : unit -> bool = "lwt_interop_on_lwt_thread" [@@noalloc]

(* On the Lwt thread only: a promise Go awaits, settled on another thread,
   must not run the callbacks of other calls there. *)
let run_settled () =
  while !pending > 0 && on_lwt_thread () do
    let r = !ring in
    let x = r.(!first) in
    r.(!first) <- no_settlement;
    first := (!first + 1) mod Array.length r;
    decr pending;
    match x with
    | Value (u, v) -> Lwt.wakeup_later u v
    | Error (u, e) -> Lwt.wakeup_later_exn u e
  done

let after_go f x =
  match f x with
  | r ->
      run_settled ();
      r
  | exception e ->
      run_settled ();
      raise e

(* The bridge's generation: a shutdown starts a new one, and a promise of
   an older one settling later must not reach Go (its call ids are reused). *)
let generation = ref 0

(* Cancellers of the Go→OCaml calls in flight that Go may cancel, by the
   slot of their id (Go's ids are a generation and a slot: func.go). A
   cancelled call's slot is free for Go to reuse at once, even if its
   promise ignores Lwt.cancel: cancel empties the slot before Lwt.cancel, so
   that a late settlement, no longer finding its canceller there, never
   reaches Go. *)
let cancellers : (unit -> unit) array ref = ref [||]
let no_canceller () = ()
let slot id = id land 0xFFFF_FFFF

let set_canceller id f =
  let a = !cancellers and i = slot id in
  if i >= Array.length a then (
    let b = Array.make (max 16 (2 * i + 1)) no_canceller in
    Array.blit a 0 b 0 (Array.length a);
    cancellers := b);
  !cancellers.(i) <- f

let clear_canceller id =
  let i = slot id in
  if i < Array.length !cancellers then !cancellers.(i) <- no_canceller

(* The exception of a function Go called, with its backtrace if OCaml
   records them (Printexc.record_backtrace), as Go reads it (an
   ocaml_error): stubs.c hands it over. *)
exception Raised of Ty.wire

let () = Callback.register_exception "lwt_interop.Raised" (Raised (Ty.wire ()))
let raised e bt = Raised (ocaml_error.to_go (ocaml_error_of e bt))

(* Whether call [id] of generation [gen] still reaches Go when its promise
   settles: the bridge was not restarted, and Go did not cancel it. *)
let reaches_go gen cancellable id canceller =
  !generation = gen
  && ((not cancellable) || (slot id < Array.length !cancellers && !cancellers.(slot id) == canceller))

(* Go calls an OCaml closure: Some v if its promise is already resolved;
   None if it is pending, and then it settles Go's call [id] later. An
   exception, raised or carried by a rejected promise, goes back as Raised. *)
let call (f : Ty.wire -> Ty.wire Lwt.t) (arg : Ty.wire) (call : int) =
  (* The call's id, or its complement (negative) if it cannot be
     cancelled. *)
  let cancellable = call >= 0 in
  let id = if cancellable then call else lnot call in
  match f arg with
  | exception e ->
      let bt = if Printexc.backtrace_status () then Printexc.get_backtrace () else "" in
      raise (raised e bt)
  | p -> (
  match Lwt.state p with
  | Lwt.Return v -> Some v
  | Lwt.Fail e -> raise (raised e "")
  | Lwt.Sleep ->
      let gen = !generation in
      (* A cancellable call is live while its canceller holds its slot: Go's
         cancel empties the slot first, and Go may then reuse the id. *)
      let canceller = if cancellable then fun () -> Lwt.cancel p else no_canceller in
      if cancellable then set_canceller id canceller;
      Lwt.on_any p
        (fun v ->
          if reaches_go gen cancellable id canceller then (
            if cancellable then clear_canceller id;
            go_resolve id v;
            run_settled ()))
        (fun e ->
          if reaches_go gen cancellable id canceller then (
            if cancellable then clear_canceller id;
            go_reject id (ocaml_error.to_go (ocaml_error_of e ""));
            run_settled ()));
      None)

(* Go cancels call [id]: Lwt.cancel its promise. *)
let cancel id =
  if slot id < Array.length !cancellers then (
    let f = !cancellers.(slot id) in
    clear_canceller id;
    f ())

let () =
  Callback.register "lwt_interop.call" call;
  Callback.register "lwt_interop.cancel" cancel;
  Callback.register "lwt_interop.wakeup" (fun u v -> push_settled (Value (u, v)));
  Callback.register "lwt_interop.wakeup_exn" (fun u b -> push_settled (Error (u, go_exn b)));
  (* Allocates a string too large for the minor heap, for Go: an exception
     (Out_of_memory) comes back to stubs.c as a value, never through Go. *)
  Callback.register "lwt_interop.create_bytes" Bytes.create

external c_init : unit -> Unix.file_descr = "lwt_interop_init"
external c_shutdown : float -> unit = "lwt_interop_shutdown"
external c_run_pending : unit -> bool = "lwt_interop_run_pending"
external forked : unit -> bool = "lwt_interop_forked" [@@noalloc]

(* The fd watch of the running bridge. *)
let watch : (Lwt_engine.event * Unix.file_descr) option ref = ref None

(* Whether init ever ran: the bridge is then the Lwt thread's for good. *)
let started = ref false

(* The OCaml functions registered for Go: its type as both sides spell it,
   and whether it is a plain function. OCaml keeps them alone: Go's Lookup
   finds one here (stubs.c reads the block) and holds its own root to it. *)
type registered = Registered : string * string * (Ty.wire -> Ty.wire Lwt.t) * bool -> registered

let registered : (string, registered) Hashtbl.t = Hashtbl.create 16

let () = Callback.register "lwt_interop.find" (fun name -> Hashtbl.find_opt registered name)

(* The bridge stopped (shut down from either side, or found unusable in a
   child process after fork): OCaml stops watching the fd and forgets the
   calls in flight. *)
let closed () =
  (match !watch with Some (ev, _) -> Lwt_engine.stop_event ev | None -> ());
  watch := None;
  incr generation;
  cancellers := [||]

let () = Callback.register "lwt_interop.closed" closed

(* The fd's callback: false means that this is a child process after fork,
   where Go's runtime is gone and the fd is the parent's. *)
let on_notify _ = if not (after_go c_run_pending ()) then closed ()

let init () =
  let fd = c_init () in
  started := true;
  watch := Some (Lwt_engine.on_readable fd on_notify, fd)

let shutdown ?(grace = 1.) () =
  match !watch with
  | Some _ when forked () -> closed ()
  | Some _ -> after_go c_shutdown grace
  | None -> ()

let run ?grace f =
  init ();
  match Lwt_main.run (Lwt.apply f ()) with
  | v ->
      shutdown ?grace ();
      v
  | exception e ->
      let bt = Printexc.get_raw_backtrace () in
      (* The program's exception is the one to see. *)
      (try shutdown ?grace () with _ -> ());
      Printexc.raise_with_backtrace e bt

type 'a handle

module Opaque = struct
  type t = exn
  type 'a key = { inject : 'a -> t; project : t -> 'a option }

  (* A fresh exception per key: the classic universal type, no Obj. *)
  let key (type a) () : a key =
    let module M = struct
      exception E of a
    end in
    { inject = (fun x -> M.E x); project = (function M.E x -> Some x | _ -> None) }

  let inject k x = k.inject x
  let project k v = k.project v
end

external lookup : string -> string -> string -> int * int = "lwt_interop_lookup"

(* A call into Go names the function by the number lookup gave, or by the
   handle of a Go Callback: the same externals. *)
external c_call : int -> Ty.wire -> Ty.wire Lwt.u -> int = "lwt_interop_call"
external c_call_sync : int -> Ty.wire -> Ty.wire = "lwt_interop_call_sync"
external c_call_callback : Ty.wire -> Ty.wire -> Ty.wire Lwt.u -> int = "lwt_interop_call"
external c_call_callback_sync : Ty.wire -> Ty.wire -> Ty.wire = "lwt_interop_call_sync"
external c_cancel : int -> unit = "lwt_interop_cancel"

(* A Go function as an 'a -> 'b Lwt.t: [start arg resolver] starts a call. *)
let async_go (start : Ty.wire -> Ty.wire Lwt.u -> int) (a : 'a Ty.t) (b : 'b Ty.t) : 'a -> 'b Lwt.t =
  let of_go = Ty.of_go_promise b in
  fun x ->
    match a.arg_to_go x with
    | exception e -> Lwt.fail e (* a getter or dispatcher raised, or Out_of_memory *)
    | arg -> (
    let p, u = Lwt.task () in
    match start arg u with
    | call ->
        Ty.done_with a arg;
        (* Go cancels from any thread: never raises. *)
        Lwt.on_cancel p (fun () -> after_go c_cancel call);
        run_settled ();
        of_go p
    | exception e ->
        Ty.done_with a arg;
        run_settled ();
        Lwt.fail e)

(* A Go function as an 'a -> 'b: [call arg] calls it. Values that cross as
   themselves need no conversion: the hot path of bind_sync. *)
let sync_go (call : Ty.wire -> Ty.wire) (a : 'a Ty.t) (b : 'b Ty.t) : 'a -> 'b =
  if a.direct && b.direct then fun x -> Ty.unwire (after_go call (Ty.wire x))
  else fun x ->
  let arg = a.arg_to_go x in
  match after_go call arg with
  | v ->
      Ty.done_with a arg;
      b.of_go v
  | exception e ->
      Ty.done_with a arg;
      raise e

(* An OCaml stream as Go reads it. Go asks for n values when it has room
   for n: the first read waits, the rest are those ready now (peek makes a
   producer of Lwt_stream.from run, and consumes nothing if it waits). An
   exception after some values is raised at the next pull, after them; so
   is the failure of a peek that was waiting (Lwt_stream would forget it,
   and call its producer again). *)
let pull_of_lwt_stream s =
  let failed = ref None and waiting = ref None in
  let rec ready acc n =
    if n = 0 then (acc, false)
    else
      match Lwt_stream.peek s with
      | exception e ->
          failed := Some e;
          (acc, false)
      | p -> (
          match Lwt.state p with
          | Lwt.Return (Some x) ->
              Lwt_stream.junk s |> ignore;
              ready (x :: acc) (n - 1)
          | Lwt.Return None -> (acc, true)
          | Lwt.Sleep ->
              waiting := Some p;
              (acc, false)
          | Lwt.Fail e ->
              failed := Some e;
              (acc, false))
  in
  fun n ->
    let first =
      match (!failed, !waiting) with
      | Some e, _ ->
          failed := None;
          Lwt.fail e
      | None, Some p ->
          waiting := None;
          Lwt.bind p (fun _ -> Lwt_stream.get s)
      | None, None -> Lwt_stream.get s
    in
    Lwt.map
      (function
        | None -> ([], true)
        | Some x ->
            let xs, last = ready [ x ] (n - 1) in
            (List.rev xs, last))
      first

(* A Go stream as OCaml reads it: a batch of the values ready in Go's buffer
   (bounded by it) at a time, asked for when the last is read. After an
   exception, the stream ends. A pending pull holds the stream (through
   [next]): in Lwt, what waits for a promise lives as long as whoever will
   settle it holds it, here the bridge, until Go answers. *)
let lwt_stream_of_pull pull =
  let batch = Queue.create () and last = ref false in
  let rec next () =
    match Queue.take_opt batch with
    | Some x -> Lwt.return_some x
    | None when !last -> Lwt.return_none
    | None ->
        Lwt.try_bind
          (fun () -> pull max_int)
          (fun (xs, is_last) ->
            last := is_last;
            List.iter (fun x -> Queue.push x batch) xs;
            next ())
          (fun e ->
            last := true;
            Lwt.fail e)
  in
  Lwt_stream.from next

module Ty = struct
  include Ty

  (* A value held across, converted by to_go and of_go; never inside a flat
     value. *)
  let held code name to_go of_go = { code; name; flat = None; to_go; of_go; direct = false; arg_to_go = to_go }

  (* An OCaml closure crosses as itself, wrapped to take and return values
     as they cross; a Go Callback as a handle, which the closure made here
     holds. *)
  let func a b =
    held ("F" ^ a.code ^ b.code)
      (Printf.sprintf "(%s -> %s Lwt.t)" a.name b.name)
      (fun f -> wire (for_go a b f))
      (fun h -> async_go (c_call_callback h) a b)

  (* A promise crosses as a function that returns it, called at once on the
     other side: to Go, a closure; from Go, a Callback awaiting Go's
     promise (whose Lwt.cancel cancels Go's). *)
  let promise a =
    let f = func unit a in
    held ("P" ^ a.code) (a.name ^ " Lwt.t") (fun p -> f.to_go (fun () -> p)) (fun h -> f.of_go h ())

  let sync_func a b =
    held ("S" ^ a.code ^ b.code)
      (Printf.sprintf "(%s -> %s)" a.name b.name)
      (fun f -> wire (for_go a b (fun x -> Lwt.return (f x))))
      (fun h -> sync_go (c_call_callback_sync h) a b)

  (* A stream crosses as the function that reads it a batch at a time:
     [pull n] is up to n values (at least one, unless it is the end) and
     whether they are the last. An exception ends the stream. *)
  let stream a =
    let batch = pair (list a) bool in
    held ("Q" ^ a.code) (a.name ^ " Lwt_stream.t")
      (* Go reads a batch before it asks for the next: one buffer serves
         them all. *)
      (fun s -> (func int (reusing_writer batch)).to_go (pull_of_lwt_stream s))
      (fun h -> lwt_stream_of_pull ((func int batch).of_go h))
end

(* The kinds of Go function, as in lwt_interop.h. *)
let kind_sync = 2

let bind name (a : 'a Ty.t) (b : 'b Ty.t) : 'a -> 'b Lwt.t =
  let fn, kind = lookup name a.code b.code in
  if kind = kind_sync then Lwt.wrap1 (sync_go (c_call_sync fn) a b) else async_go (c_call fn) a b

let bind_sync name (a : 'a Ty.t) (b : 'b Ty.t) : 'a -> 'b =
  let fn, kind = lookup name a.code b.code in
  if kind <> kind_sync then
    invalid_arg
      (Printf.sprintf
         "Lwt_interop.bind_sync: %S is not a sync Go function (register it \
          with lwt.RegisterSync, or use bind)"
         name);
  sync_go (c_call_sync fn) a b

(* Registrations happen before init on any thread, after it on the Lwt
   thread, which reads them. *)
let check_registering fn =
  if !started && not (on_lwt_thread ()) then
    failwith (Printf.sprintf "Lwt_interop.%s: called from a thread that is not the Lwt thread" fn)

let register_exception name e =
  check_registering "register_exception";
  if Hashtbl.mem exceptions name then
    invalid_arg (Printf.sprintf "Lwt_interop.register_exception: %S is already registered" name);
  Hashtbl.replace exceptions name e

(* Registers g, the function as Go calls it, whose argument and result
   types are arg and ret (type codes). *)
let register_as fn name arg ret (g : Ty.fn) sync =
  check_registering fn;
  if Hashtbl.mem registered name then
    invalid_arg (Printf.sprintf "Lwt_interop.%s: %S is already registered" fn name);
  Hashtbl.replace registered name (Registered (arg, ret, g, sync))

let register name (a : 'a Ty.t) (b : 'b Ty.t) f = register_as "register" name a.code b.code (Ty.for_go a b f) false

let register_sync name (a : 'a Ty.t) (b : 'b Ty.t) f =
  register_as "register_sync" name a.code b.code (Ty.for_go a b (fun x -> Lwt.return (f x))) true

(* Functions of several arguments. *)

let bind_fn name args =
  let r = Ty.args_result args in
  let fn, kind = lookup name (Ty.args_code args) r.code in
  let call =
    if kind = kind_sync then Lwt.wrap1 (sync_go (c_call_sync fn) Ty.wires r) else async_go (c_call fn) Ty.wires r
  in
  Ty.curry_lwt args call []

let bind_fn_sync name args =
  let r = Ty.args_result args in
  let fn, kind = lookup name (Ty.args_code args) r.code in
  if kind <> kind_sync then
    invalid_arg (Printf.sprintf "Lwt_interop.bind_fn_sync: %S is not a sync Go function (use bind_fn)" name);
  Ty.curry_plain args (sync_go (c_call_sync fn) Ty.wires r) []

let register_fn name args f =
  let r = Ty.args_result args in
  register_as "register_fn" name (Ty.args_code args) r.code
    (fun w -> Ty.result_to_go r (Ty.apply_lwt args f (Ty.unwire w)))
    false

let register_fn_sync name args f =
  let r = Ty.args_result args in
  register_as "register_fn_sync" name (Ty.args_code args) r.code
    (fun w -> Ty.result_to_go r (Lwt.return (Ty.apply_plain args f (Ty.unwire w))))
    true

type stats = { roots : int; handles : int; jobs : int; tasks : int; calls : int; stalls : int }

external go_stats : unit -> int * int * int * int * int * int = "lwt_interop_go_stats"

let stats () =
  let roots, handles, jobs, tasks, calls, stalls =
    if forked () then (0, 0, 0, 0, 0, 0) else go_stats ()
  in
  { roots; handles; jobs; tasks; calls; stalls }
