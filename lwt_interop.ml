exception Go_error of string

let () = Callback.register_exception "lwt_interop.Go_error" (Go_error "")

(* Called by stubs.c on behalf of Go, on the Lwt thread. *)

external go_resolve : int -> Ty.wire -> unit = "lwt_interop_resolve"
external go_reject : int -> string -> bool -> unit = "lwt_interop_reject"

(* The promises Go settled during its last entry, whose callbacks run once
   Go has returned to OCaml: no Lwt callback runs inside a Go frame because
   of Go (so a callback may call shutdown, or raise, freely). Every external
   that enters Go is followed by [run_settled]. *)
type settled = Value : Ty.wire Lwt.u * Ty.wire -> settled | Error : Ty.wire Lwt.u * string -> settled

(* A ring of the settlements not yet run: no allocation per settlement but
   its own block. *)
let no_settlement = Error (snd (Lwt.wait ()), "")
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
    | Error (u, msg) -> Lwt.wakeup_later_exn u (Go_error msg)
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

(* The exception of a function Go called, as text, with its backtrace if
   OCaml records them (Printexc.record_backtrace), and whether it is a
   Go_error (its text is then Go's, passed on unchanged, so that an error
   crossing back and forth never grows): stubs.c reads it. *)
exception Raised of string * string * bool

let () = Callback.register_exception "lwt_interop.Raised" (Raised ("", "", false))

let exn_text = function Go_error m -> (m, true) | e -> (Printexc.to_string e, false)

(* Whether call [id] of generation [gen] still reaches Go when its promise
   settles: the bridge was not restarted, and Go did not cancel it. *)
let reaches_go gen cancellable id canceller =
  !generation = gen
  && ((not cancellable) || (slot id < Array.length !cancellers && !cancellers.(slot id) == canceller))

(* Go calls an OCaml closure: Some v if its promise is already resolved;
   None if it is pending, and then it settles Go's call [id] later. An
   exception, raised or carried by a rejected promise, goes back as Raised. *)
let call (f : Ty.wire -> Ty.wire Lwt.t) (arg : Ty.wire) (id : int) (cancellable : bool) =
  match f arg with
  | exception e ->
      let bt = if Printexc.backtrace_status () then Printexc.get_backtrace () else "" in
      let text, from_go = exn_text e in
      raise (Raised (text, bt, from_go))
  | p -> (
  match Lwt.state p with
  | Lwt.Return v -> Some v
  | Lwt.Fail e ->
      let text, from_go = exn_text e in
      raise (Raised (text, "", from_go))
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
            let text, from_go = exn_text e in
            go_reject id text from_go;
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
  Callback.register "lwt_interop.wakeup_exn" (fun u msg -> push_settled (Error (u, msg)));
  (* Allocates a string too large for the minor heap, for Go: an exception
     (Out_of_memory) comes back to stubs.c as a value, never through Go. *)
  Callback.register "lwt_interop.create_bytes" Bytes.create

external c_init : unit -> Unix.file_descr = "lwt_interop_init"
external c_shutdown : float -> unit = "lwt_interop_shutdown"
external c_run_pending : unit -> bool = "lwt_interop_run_pending"
external forked : unit -> bool = "lwt_interop_forked" [@@noalloc]

(* The fd watch of the running bridge. *)
let watch : (Lwt_engine.event * Unix.file_descr) option ref = ref None

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
  watch := Some (Lwt_engine.on_readable fd on_notify, fd)

let shutdown ?(grace = 1.) () =
  match !watch with
  | Some _ when forked () -> closed ()
  | Some _ -> after_go c_shutdown grace
  | None -> ()

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

module Ty = Ty

external lookup : string -> string -> string -> int * int = "lwt_interop_lookup"
external c_call : int -> Ty.wire -> Ty.wire Lwt.u -> int = "lwt_interop_call"
external c_call_sync : int -> Ty.wire -> Ty.wire = "lwt_interop_call_sync"
external c_cancel : int -> unit = "lwt_interop_cancel"

(* The kinds of Go function, as in lwt_interop.h. *)
let kind_sync = 2

let bind name (a : 'a Ty.t) (b : 'b Ty.t) : 'a -> 'b Lwt.t =
  let fn, kind = lookup name a.code b.code in
  if kind = kind_sync then fun x ->
    let arg = a.arg_to_go x in
    match c_call_sync fn arg with
    | v ->
        Ty.done_with a arg;
        run_settled ();
        Lwt.wrap1 b.of_go v
    | exception e ->
        Ty.done_with a arg;
        run_settled ();
        Lwt.fail e
  else
    let of_go = Ty.of_go_promise b in
    fun x ->
      let p, u = Lwt.task () in
      let arg = a.arg_to_go x in
      match c_call fn arg u with
      | call ->
          Ty.done_with a arg;
          (* Go cancels from any thread: never raises. *)
          Lwt.on_cancel p (fun () -> after_go c_cancel call);
          run_settled ();
          of_go p
      | exception e ->
          Ty.done_with a arg;
          run_settled ();
          Lwt.fail e

let bind_sync name (a : 'a Ty.t) (b : 'b Ty.t) : 'a -> 'b =
  let fn, kind = lookup name a.code b.code in
  if kind <> kind_sync then
    invalid_arg
      (Printf.sprintf
         "Lwt_interop.bind_sync: %S is not a sync Go function (register it \
          with lwt.RegisterSync, or use bind)"
         name);
  fun x ->
    let arg = a.arg_to_go x in
    match after_go (c_call_sync fn) arg with
    | v ->
        Ty.done_with a arg;
        b.of_go v
    | exception e ->
        Ty.done_with a arg;
        raise e

let register_as fn name (a : 'a Ty.t) (b : 'b Ty.t) (f : 'a -> 'b Lwt.t) sync =
  if Option.is_some !watch && not (on_lwt_thread ()) then
    failwith (Printf.sprintf "Lwt_interop.%s: called from a thread that is not the Lwt thread" fn);
  if Hashtbl.mem registered name then
    invalid_arg (Printf.sprintf "Lwt_interop.%s: %S is already registered" fn name);
  Hashtbl.replace registered name (Registered (a.code, b.code, Ty.for_go a b f, sync))

let register name a b f = register_as "register" name a b f false

let register_sync name a b f = register_as "register_sync" name a b (fun x -> Lwt.return (f x)) true

type stats = { roots : int; handles : int; jobs : int; tasks : int; calls : int; stalls : int }

external go_stats : unit -> int * int * int * int * int * int = "lwt_interop_go_stats"

let stats () =
  let roots, handles, jobs, tasks, calls, stalls =
    if forked () then (0, 0, 0, 0, 0, 0) else go_stats ()
  in
  { roots; handles; jobs; tasks; calls; stalls }
