exception Go_error of string

let () = Callback.register_exception "lwt_interop.Go_error" (Go_error "")

(* Called by stubs.c on behalf of Go, on the Lwt thread. *)

external go_resolve : int -> 'b -> unit = "lwt_interop_resolve"
external go_reject : int -> string -> unit = "lwt_interop_reject"

(* The bridge's generation: a shutdown starts a new one, and a promise of
   an older one settling later must not reach Go (its call ids are reused). *)
let generation = ref 0

(* Cancellers of the Go→OCaml calls in flight that Go may cancel, by id. *)
let cancellers : (unit -> unit) array ref = ref [||]
let no_canceller () = ()

let set_canceller id f =
  let a = !cancellers in
  if id >= Array.length a then (
    let b = Array.make (max 16 (2 * id + 1)) no_canceller in
    Array.blit a 0 b 0 (Array.length a);
    cancellers := b);
  !cancellers.(id) <- f

let clear_canceller id =
  if id < Array.length !cancellers then !cancellers.(id) <- no_canceller

(* The exception of a function Go called, as text, with its backtrace if
   OCaml records them (Printexc.record_backtrace): stubs.c reads it. *)
exception Raised of string * string

let () = Callback.register_exception "lwt_interop.Raised" (Raised ("", ""))

(* Go calls an OCaml closure: Some v if its promise is already resolved;
   None if it is pending, and then it settles Go's call [id] later. An
   exception, raised or carried by a rejected promise, goes back as Raised. *)
let call (f : 'a -> 'b Lwt.t) (arg : 'a) (id : int) (cancellable : bool) =
  match f arg with
  | exception e ->
      let bt = if Printexc.backtrace_status () then Printexc.get_backtrace () else "" in
      raise (Raised (Printexc.to_string e, bt))
  | p -> (
  match Lwt.state p with
  | Lwt.Return v -> Some v
  | Lwt.Fail e -> raise (Raised (Printexc.to_string e, ""))
  | Lwt.Sleep ->
      let gen = !generation in
      if cancellable then set_canceller id (fun () -> Lwt.cancel p);
      Lwt.on_any p
        (fun v ->
          if !generation = gen then (
            if cancellable then clear_canceller id;
            go_resolve id v))
        (fun e ->
          if !generation = gen then (
            if cancellable then clear_canceller id;
            go_reject id (Printexc.to_string e)));
      None)

(* Go cancels call [id]: Lwt.cancel its promise. *)
let cancel id =
  if id < Array.length !cancellers then (
    let f = !cancellers.(id) in
    clear_canceller id;
    f ())

let () =
  Callback.register "lwt_interop.call" call;
  Callback.register "lwt_interop.cancel" cancel;
  Callback.register "lwt_interop.wakeup" Lwt.wakeup_later;
  Callback.register "lwt_interop.wakeup_exn" (fun u msg ->
      Lwt.wakeup_later_exn u (Go_error msg))

external c_init : unit -> Unix.file_descr = "lwt_interop_init"
external c_shutdown : float -> unit = "lwt_interop_shutdown"
external c_run_pending : unit -> unit = "lwt_interop_run_pending"

(* The fd watch of the running bridge. *)
let watch : (Lwt_engine.event * Unix.file_descr) option ref = ref None

external c_register : string -> string -> string -> ('a -> 'b Lwt.t) -> bool -> unit
  = "lwt_interop_register"

(* The OCaml functions registered for Go, each as the call that hands it to
   Go: made again at every init. *)
let registered : (string, unit -> unit) Hashtbl.t = Hashtbl.create 16

let init () =
  let fd = c_init () in
  watch := Some (Lwt_engine.on_readable fd (fun _ -> c_run_pending ()), fd);
  Hashtbl.iter (fun _ hand_over -> hand_over ()) registered

let shutdown ?(grace = 1.) () = match !watch with Some _ -> c_shutdown grace | None -> ()

(* Go shut the bridge down (from either side). *)
let closed () =
  (match !watch with Some (ev, _) -> Lwt_engine.stop_event ev | None -> ());
  watch := None;
  incr generation;
  cancellers := [||]

let () = Callback.register "lwt_interop.closed" closed

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

module Ty = struct
  type 'a t = string

  let unit = "unit"
  let bool = "bool"
  let int = "int"
  let float = "float"
  let string = "string"
  let bytes = "bytes"
  let option a = a ^ " option"
  let list a = a ^ " list"
  let pair a b = Printf.sprintf "(%s * %s)" a b
  let handle = "handle"
  let opaque = "opaque"
  let func a b = Printf.sprintf "(%s -> %s Lwt.t)" a b
  let to_string t = t
end

external lookup : string -> string -> string -> int * int = "lwt_interop_lookup"
external c_call : int -> 'a -> 'b Lwt.u -> int = "lwt_interop_call"
external c_call_sync : int -> 'a -> 'b = "lwt_interop_call_sync"
external c_cancel : int -> unit = "lwt_interop_cancel"

(* The kinds of Go function, as in lwt_interop.h. *)
let kind_sync = 2

let bind name (a : 'a Ty.t) (b : 'b Ty.t) : 'a -> 'b Lwt.t =
  let fn, kind = lookup name a b in
  if kind = kind_sync then fun x ->
    match (c_call_sync fn x : 'b) with
    | v -> Lwt.return v
    | exception e -> Lwt.fail e
  else fun x ->
    let p, u = Lwt.task () in
    match c_call fn x u with
    | call ->
        Lwt.on_cancel p (fun () -> c_cancel call);
        p
    | exception e -> Lwt.fail e

let bind_sync name (a : 'a Ty.t) (b : 'b Ty.t) : 'a -> 'b =
  let fn, kind = lookup name a b in
  if kind <> kind_sync then
    invalid_arg
      (Printf.sprintf
         "Lwt_interop.bind_sync: %S is not a sync Go function (register it \
          with lwt.RegisterSync, or use bind)"
         name);
  fun x -> c_call_sync fn x

let register_as fn name (a : 'a Ty.t) (b : 'b Ty.t) (f : 'a -> 'b Lwt.t) sync =
  if Hashtbl.mem registered name then
    invalid_arg (Printf.sprintf "Lwt_interop.%s: %S is already registered" fn name);
  let hand_over () = c_register name a b f sync in
  Hashtbl.replace registered name hand_over;
  match !watch with Some _ -> hand_over () | None -> ()

let register name a b f = register_as "register" name a b f false

let register_sync name a b f = register_as "register_sync" name a b (fun x -> Lwt.return (f x)) true

type stats = { roots : int; handles : int; jobs : int; tasks : int; calls : int; stalls : int }

external go_stats : unit -> int * int * int * int * int * int = "lwt_interop_go_stats"

let stats () =
  let roots, handles, jobs, tasks, calls, stalls = go_stats () in
  { roots; handles; jobs; tasks; calls; stalls }

external on_lwt_thread : unit -> bool = "lwt_interop_on_lwt_thread" [@@noalloc]
