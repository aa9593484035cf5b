(* OCaml types as both sides read them: each ['a t] is the one declaration
   of a type, from which OCaml writes and reads its values and Go builds its
   codec (values.go). Plain values; any thread.

   A value crosses in one of two ways:
   - as itself, for the types Go reads directly (unit, bool, int, char,
     float, string, bytes, handles, opaque values, closures);
   - as a flat buffer for the others: OCaml writes it into a [writer] that
     Go reads in place, and Go hands a [bytes] that OCaml reads. The format
     is in flat.go; [code] is the type's shape, which Go parses
     (ocamltype.go) and matches with its own type when a function is bound
     or looked up. *)

(* A value as it crosses: the value itself, or a writer, or bytes (see
   above). The externals that enter Go take and return it; [code] tells Go
   which, so the identity below is the whole conversion. *)
type wire

external wire : 'a -> wire = "%identity"
external unwire : wire -> 'a = "%identity"

type writer = { mutable buf : bytes; mutable pos : int }
type reader = { src : bytes; mutable at : int }

let reserve w n =
  let len = Bytes.length w.buf in
  if w.pos + n > len then (
    let b = Bytes.create (max (2 * len) (w.pos + n)) in
    Bytes.blit w.buf 0 b 0 w.pos;
    w.buf <- b)

let put_u8 w n =
  reserve w 1;
  Bytes.unsafe_set w.buf w.pos (Char.unsafe_chr n);
  w.pos <- w.pos + 1

let put_i32 w n =
  reserve w 4;
  Bytes.set_int32_le w.buf w.pos n;
  w.pos <- w.pos + 4

let put_i64 w n =
  reserve w 8;
  Bytes.set_int64_le w.buf w.pos n;
  w.pos <- w.pos + 8

let put_int w n = put_i64 w (Int64.of_int n)

let put_string w s =
  let n = String.length s in
  put_int w n;
  reserve w n;
  Bytes.blit_string s 0 w.buf w.pos n;
  w.pos <- w.pos + n

let get_u8 r =
  let c = Bytes.get r.src r.at in
  r.at <- r.at + 1;
  Char.code c

let get_i32 r =
  let n = Bytes.get_int32_le r.src r.at in
  r.at <- r.at + 4;
  n

let get_i64 r =
  let n = Bytes.get_int64_le r.src r.at in
  r.at <- r.at + 8;
  n

let get_int r = Int64.to_int (get_i64 r)

let get_string r =
  let n = get_int r in
  let s = Bytes.sub_string r.src r.at n in
  r.at <- r.at + n;
  s

(* How a type's values sit inside a buffer. *)
type 'a flat = { write : writer -> 'a -> unit; read : reader -> 'a }

type 'a t = {
  code : string;  (** its shape, as Go parses it *)
  name : string;  (** as OCaml spells it *)
  flat : 'a flat option;  (** None: it crosses only as itself, never inside another type *)
  to_go : 'a -> wire;
  of_go : wire -> 'a;
  direct : bool;  (** to_go and of_go are the identity *)
  arg_to_go : 'a -> wire;
      (** to_go for an argument of a call into Go, which Go has read when
          the external returns: done_with then gives its writer back *)
}

let to_string t = t.name

let direct code name flat =
  { code; name; flat = Some flat; to_go = wire; of_go = unwire; direct = true; arg_to_go = wire }

external on_lwt_thread : unit -> bool = "lwt_interop_on_lwt_thread" [@@noalloc]

(* The Lwt thread's writer for arguments, reused (a fresh one costs a
   buffer grown from scratch, in the major heap once large). Taken while in
   use: a value written meanwhile (by a getter that calls Go) gets its own,
   and so does another thread's. *)
let spare = ref None

let writer () = { buf = Bytes.create 128; pos = 0 }

let take_writer () =
  match !spare with
  | Some w when on_lwt_thread () ->
      spare := None;
      w.pos <- 0;
      w
  | _ -> writer ()

(* After the call that took the argument: its writer may be reused. *)
let done_with t (v : wire) =
  if (not t.direct) && t.flat <> None && on_lwt_thread () then (
    let w : writer = unwire v in
    if Bytes.length w.buf <= 1 lsl 20 then spare := Some w)

(* A type that crosses as a buffer. *)
let buffered code name flat =
  let write w x =
    flat.write w x;
    wire w
  in
  let of_go v =
    let r = { src = unwire v; at = 0 } in
    flat.read r
  in
  {
    code;
    name;
    flat = Some flat;
    to_go = (fun x -> write (writer ()) x);
    of_go;
    direct = false;
    arg_to_go = (fun x -> write (take_writer ()) x);
  }

(* [t] writing each value into one buffer of its own, reused: for results
   that Go has read before the next one is written (a stream's batches),
   which would otherwise each grow a buffer, in the major heap when
   large. *)
let reusing_writer t =
  match t.flat with
  | Some flat when not t.direct ->
      let w = writer () in
      {
        t with
        to_go =
          (fun x ->
            w.pos <- 0;
            flat.write w x;
            wire w);
      }
  | _ -> t

let flat_of fn t =
  match t.flat with
  | Some f -> f
  | None ->
      invalid_arg
        (Printf.sprintf "Lwt_interop.Ty.%s: a %s crosses only as an argument or a result, not inside another type"
           fn t.name)

let unit = direct "u" "unit" { write = (fun _ () -> ()); read = (fun _ -> ()) }

let bool =
  direct "b" "bool" { write = (fun w b -> put_u8 w (Bool.to_int b)); read = (fun r -> get_u8 r <> 0) }

let int = direct "i" "int" { write = put_int; read = get_int }
let char = direct "c" "char" { write = (fun w c -> put_u8 w (Char.code c)); read = (fun r -> Char.chr (get_u8 r)) }

let float =
  direct "f" "float"
    {
      write = (fun w x -> put_i64 w (Int64.bits_of_float x));
      read = (fun r -> Int64.float_of_bits (get_i64 r));
    }

let string = direct "s" "string" { write = put_string; read = get_string }

let bytes =
  direct "y" "bytes"
    { write = (fun w b -> put_string w (Bytes.unsafe_to_string b)); read = (fun r -> Bytes.of_string (get_string r)) }

let int32 = buffered "3" "int32" { write = put_i32; read = get_i32 }
let int64 = buffered "6" "int64" { write = put_i64; read = get_i64 }

let option a =
  let fa = flat_of "option" a in
  buffered ("?" ^ a.code) (a.name ^ " option")
    {
      write = (fun w -> function None -> put_u8 w 0 | Some x -> put_u8 w 1; fa.write w x);
      read = (fun r -> if get_u8 r = 0 then None else Some (fa.read r));
    }

let list a =
  let fa = flat_of "list" a in
  buffered ("L" ^ a.code) (a.name ^ " list")
    {
      write = (fun w l -> put_int w (List.length l); List.iter (fa.write w) l);
      read = (fun r -> List.init (get_int r) (fun _ -> fa.read r));
    }

let array a =
  let fa = flat_of "array" a in
  buffered ("A" ^ a.code) (a.name ^ " array")
    {
      write = (fun w x -> put_int w (Array.length x); Array.iter (fa.write w) x);
      read = (fun r -> Array.init (get_int r) (fun _ -> fa.read r));
    }

let result a e =
  let fa = flat_of "result" a and fe = flat_of "result" e in
  buffered ("E" ^ a.code ^ e.code)
    (Printf.sprintf "(%s, %s) result" a.name e.name)
    {
      write = (fun w -> function Ok x -> put_u8 w 0; fa.write w x | Error x -> put_u8 w 1; fe.write w x);
      read = (fun r -> if get_u8 r = 0 then Ok (fa.read r) else Error (fe.read r));
    }

(* Type applications are postfix, and tuples and functions come in
   parentheses: nothing else needs them. *)
let tuple_name names = "(" ^ String.concat " * " names ^ ")"

let pair a b =
  let fa = flat_of "pair" a and fb = flat_of "pair" b in
  buffered ("T2" ^ a.code ^ b.code) (tuple_name [ a.name; b.name ])
    {
      write = (fun w (x, y) -> fa.write w x; fb.write w y);
      read =
        (fun r ->
          let x = fa.read r in
          (x, fb.read r));
    }

let tuple3 a b c =
  let fa = flat_of "tuple3" a and fb = flat_of "tuple3" b and fc = flat_of "tuple3" c in
  buffered ("T3" ^ a.code ^ b.code ^ c.code) (tuple_name [ a.name; b.name; c.name ])
    {
      write = (fun w (x, y, z) -> fa.write w x; fb.write w y; fc.write w z);
      read =
        (fun r ->
          let x = fa.read r in
          let y = fb.read r in
          (x, y, fc.read r));
    }

let tuple4 a b c d =
  let fa = flat_of "tuple4" a and fb = flat_of "tuple4" b and fc = flat_of "tuple4" c and fd = flat_of "tuple4" d in
  buffered
    ("T4" ^ a.code ^ b.code ^ c.code ^ d.code)
    (tuple_name [ a.name; b.name; c.name; d.name ])
    {
      write = (fun w (x, y, z, t) -> fa.write w x; fb.write w y; fc.write w z; fd.write w t);
      read =
        (fun r ->
          let x = fa.read r in
          let y = fb.read r in
          let z = fc.read r in
          (x, y, z, fd.read r));
    }

(* Names Go parses: an OCaml identifier (the code's delimiters cannot
   occur in one). *)
let check_ident fn what s =
  let ok = function 'a' .. 'z' | 'A' .. 'Z' | '0' .. '9' | '_' | '\'' -> true | _ -> false in
  if s = "" || not (String.for_all ok s) then
    invalid_arg (Printf.sprintf "Lwt_interop.Ty.%s: %S is not an OCaml %s" fn s what)

(* Records: the fields, in order, each read into the constructor's next
   argument. ('r, 'c) fields applies a 'c (the remaining arguments) to
   make an 'r. *)
type ('r, 'a) field = { fname : string; fty : 'a t; fflat : 'a flat; get : 'r -> 'a }

type ('r, 'c) fields =
  | No_field : ('r, 'r) fields
  | Field : ('r, 'a) field * ('r, 'c) fields -> ('r, 'a -> 'c) fields

type ('r, 'c, 'rest) open_record = {
  rname : string;
  make : 'c;
  fields : ('r, 'rest) fields -> ('r, 'c) fields;  (** the fields so far, before the rest *)
}

let record name make =
  check_ident "record" "type name" name;
  { rname = name; make; fields = (fun rest -> rest) }

let field fname fty get =
  check_ident "field" "field name" fname;
  { fname; fty; fflat = flat_of "field" fty; get }

let ( |+ ) r f = { r with fields = (fun rest -> r.fields (Field (f, rest))) }

let sealr (type r c) (r : (r, c, r) open_record) : r t =
  let fields = r.fields No_field in
  let rec codes : type c. (r, c) fields -> string list = function
    | No_field -> []
    | Field (f, rest) -> (f.fname ^ ":" ^ f.fty.code) :: codes rest
  in
  let rec write : type c. (r, c) fields -> writer -> r -> unit =
   fun fs w x -> match fs with No_field -> () | Field (f, rest) -> f.fflat.write w (f.get x); write rest w x
  in
  let rec read : type c. (r, c) fields -> c -> reader -> r =
   fun fs make r -> match fs with No_field -> make | Field (f, rest) -> read rest (make (f.fflat.read r)) r
  in
  let rec names : type c. (r, c) fields -> string list = function
    | No_field -> []
    | Field (f, rest) -> f.fname :: names rest
  in
  let names_ = names fields in
  if List.length (List.sort_uniq compare names_) <> List.length names_ then
    invalid_arg (Printf.sprintf "Lwt_interop.Ty.sealr: record %s has two fields of one name" r.rname);
  let names = codes fields in
  buffered
    ("{" ^ r.rname ^ ":" ^ String.concat "" names ^ "}")
    r.rname
    { write = (fun w x -> write fields w x); read = read fields r.make }

(* Variants: each constructor has its number (its position), and the
   dispatcher the user writes maps a value to its constructor's case_v. *)
type 'v case_v = Case0 : int -> 'v case_v | Case1 : int * 'a flat * 'a -> 'v case_v

type ('v, 'f) case = {
  cname : string;
  ccode : string;
  cmake : int -> 'f;  (** the dispatcher's argument for constructor n *)
  cread : reader -> 'v;
}

let case0 cname v =
  check_ident "case0" "constructor" cname;
  { cname; ccode = "."; cmake = (fun n -> Case0 n); cread = (fun _ -> v) }

let case1 cname a inject =
  check_ident "case1" "constructor" cname;
  let fa = flat_of "case1" a in
  { cname; ccode = ":" ^ a.code; cmake = (fun n x -> Case1 (n, fa, x)); cread = (fun r -> inject (fa.read r)) }

type ('v, 'c, 'r) cases =
  | No_case : ('v, 'r, 'r) cases
  | Case : ('v, 'f) case * ('v, 'c, 'r) cases -> ('v, 'f -> 'c, 'r) cases

type ('v, 'c, 'rest) open_variant = {
  vname : string;
  dispatch : 'c;
  cases : ('v, 'rest, 'v -> 'v case_v) cases -> ('v, 'c, 'v -> 'v case_v) cases;
}

let variant name dispatch =
  check_ident "variant" "type name" name;
  { vname = name; dispatch; cases = (fun rest -> rest) }

let ( |~ ) v c = { v with cases = (fun rest -> v.cases (Case (c, rest))) }

let sealv (type v c) (v : (v, c, v -> v case_v) open_variant) : v t =
  let cases = v.cases No_case in
  let rec apply : type c. int -> (v, c, v -> v case_v) cases -> c -> v -> v case_v =
   fun n cs f -> match cs with No_case -> f | Case (c, rest) -> apply (n + 1) rest (f (c.cmake n))
  in
  let rec readers : type c. (v, c, v -> v case_v) cases -> (reader -> v) list = function
    | No_case -> []
    | Case (c, rest) -> c.cread :: readers rest
  in
  let rec codes : type c. (v, c, v -> v case_v) cases -> string list = function
    | No_case -> []
    | Case (c, rest) -> (c.cname ^ c.ccode) :: codes rest
  in
  let rec names : type c. (v, c, v -> v case_v) cases -> string list = function
    | No_case -> []
    | Case (c, rest) -> c.cname :: names rest
  in
  let names_ = names cases in
  if List.length (List.sort_uniq compare names_) <> List.length names_ then
    invalid_arg (Printf.sprintf "Lwt_interop.Ty.sealv: variant %s has two constructors of one name" v.vname);
  let dispatch = apply 0 cases v.dispatch in
  let readers = Array.of_list (readers cases) in
  if Array.length readers = 0 then invalid_arg ("Lwt_interop.Ty.sealv: variant " ^ v.vname ^ " has no constructor");
  buffered
    ("<" ^ v.vname ^ ":" ^ String.concat "" (codes cases) ^ ">")
    v.vname
    {
      write =
        (fun w x ->
          match dispatch x with
          | Case0 n -> put_i32 w (Int32.of_int n)
          | Case1 (n, fa, a) ->
              put_i32 w (Int32.of_int n);
              fa.write w a);
      read =
        (fun r ->
          let n = Int32.to_int (get_i32 r) in
          if n < 0 || n >= Array.length readers then
            failwith (Printf.sprintf "Lwt_interop: constructor #%d of variant %s does not exist" n v.vname);
          readers.(n) r);
    }

let handle = { code = "h"; name = "handle"; flat = None; to_go = wire; of_go = unwire; direct = true; arg_to_go = wire }
let opaque = { code = "o"; name = "opaque"; flat = None; to_go = wire; of_go = unwire; direct = true; arg_to_go = wire }

(* For a direct type, its promise is its wire's. *)
external promise_wire : 'a Lwt.t -> wire Lwt.t = "%identity"
external wire_promise : wire Lwt.t -> 'a Lwt.t = "%identity"
(* A function as Go calls it: its argument and result as they cross. *)
type fn = wire -> wire Lwt.t

external fn_wire : ('a -> 'b Lwt.t) -> fn = "%identity"

let for_go a b f : fn =
  if a.direct && b.direct then fn_wire f
  else if b.direct then fun x -> promise_wire (f (a.of_go x))
  else fun x -> Lwt.map b.to_go (f (a.of_go x))

(* What OCaml gets back of a call into Go whose result crosses as b. *)
let of_go_promise b : wire Lwt.t -> 'b Lwt.t = if b.direct then wire_promise else Lwt.map b.of_go

(* The arguments of a function of several, and its result: ('l, 'p, 'r)
   args describes an 'l (the function returning 'r Lwt.t) and a 'p (the
   plain one returning 'r). They cross as a list of wires, each argument as
   it would alone. *)
type ('l, 'p, 'r) args =
  | Returning : 'r t -> ('r Lwt.t, 'r, 'r) args
  | Arg : 'a t * ('l, 'p, 'r) args -> ('a -> 'l, 'a -> 'p, 'r) args

let returning r = Returning r
let ( @-> ) a rest = Arg (a, rest)

let rec args_result : type l p r. (l, p, r) args -> r t = function
  | Returning r -> r
  | Arg (_, rest) -> args_result rest

let args_code args =
  let rec codes : type l p r. (l, p, r) args -> string list = function
    | Returning _ -> []
    | Arg (a, rest) -> a.code :: codes rest
  in
  let cs = codes args in
  let n = List.length cs in
  if n < 2 || n > 4 then invalid_arg "Lwt_interop: a function of several arguments takes 2 to 4 (Go's lwt.Args2 to Args4)";
  "M" ^ string_of_int n ^ String.concat "" cs

(* The list of arguments' wires, crossing as itself. *)
let wires : wire list t = { code = ""; name = ""; flat = None; to_go = wire; of_go = unwire; direct = true; arg_to_go = wire }

(* The function that collects its arguments and hands their wires, in
   order, to [k]: for OCaml's calls into Go. *)
let rec curry_lwt : type l p r. (l, p, r) args -> (wire list -> r Lwt.t) -> wire list -> l =
 fun args k acc ->
  match args with
  | Returning _ -> k (List.rev acc)
  | Arg (a, rest) -> fun x -> curry_lwt rest k (a.to_go x :: acc)

let rec curry_plain : type l p r. (l, p, r) args -> (wire list -> r) -> wire list -> p =
 fun args k acc ->
  match args with
  | Returning _ -> k (List.rev acc)
  | Arg (a, rest) -> fun x -> curry_plain rest k (a.to_go x :: acc)

(* f applied to the arguments' wires: for Go's calls into OCaml. *)
let rec apply_lwt : type l p r. (l, p, r) args -> l -> wire list -> r Lwt.t =
 fun args f ws ->
  match (args, ws) with
  | Returning _, _ -> f
  | Arg (a, rest), w :: ws -> apply_lwt rest (f (a.of_go w)) ws
  | Arg _, [] -> invalid_arg "Lwt_interop: too few arguments from Go"

let rec apply_plain : type l p r. (l, p, r) args -> p -> wire list -> r =
 fun args f ws ->
  match (args, ws) with
  | Returning _, _ -> f
  | Arg (a, rest), w :: ws -> apply_plain rest (f (a.of_go w)) ws
  | Arg _, [] -> invalid_arg "Lwt_interop: too few arguments from Go"

(* A promise of r, as Go reads its result. *)
let result_to_go r (p : 'r Lwt.t) : wire Lwt.t = if r.direct then promise_wire p else Lwt.map r.to_go p
