;; relay: passes a request along a chain of agents, then answers its origin.
;;
;; A request from a runtime sender (such as the REST API, "@api/...") has
;; content "hop1 hop2 ... hopN". The relay forwards it to hop1 with content
;; "<origin> hop2 ... hopN"; each relay forwards to the next hop the same way,
;; and the last one replies "done" to the origin, with `in_reply_to` set to
;; the request's `reply_with` (kept unchanged along the chain).
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (memory (export "memory") 1)

  (func (export "caxton_alloc") (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 16000)) (then (return (i32.const -1))))
    (i32.const 1024))

  ;; Index of the first space in [p, p+n), or n.
  (func $space (param $p i32) (param $n i32) (result i32)
    (local $i i32)
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (br_if $done (i32.eq (i32.load8_u (i32.add (local.get $p) (local.get $i))) (i32.const 32)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (local.get $i))

  ;; Sends (performative, conversation and reply ids of $in) to receiver
  ;; [rp, rp+rn) with content [ap, ap+an) ++ [bp, bp+bn).
  (func $emit (param $in i32) (param $perf i32) (param $reply i32)
              (param $rp i32) (param $rn i32) (param $ap i32) (param $an i32) (param $bp i32) (param $bn i32) (result i32)
    (local $out i32)
    (local.set $out (i32.const 32768))
    (i32.store8 (local.get $out) (i32.const 1))
    (i32.store8 offset=1 (local.get $out) (local.get $perf))
    (i32.store16 offset=2 (local.get $out) (i32.const 0))
    (i64.store offset=4 (local.get $out) (i64.const 0))
    (i64.store offset=12 (local.get $out) (i64.load offset=12 (local.get $in)))
    (if (local.get $reply)
      (then
        (i64.store offset=20 (local.get $out) (i64.const 0))
        (i64.store offset=28 (local.get $out) (i64.load offset=20 (local.get $in))))
      (else
        (i64.store offset=20 (local.get $out) (i64.load offset=20 (local.get $in)))
        (i64.store offset=28 (local.get $out) (i64.load offset=28 (local.get $in)))))
    (i32.store8 offset=36 (local.get $out) (i32.const 0))
    (i32.store8 offset=37 (local.get $out) (local.get $rn))
    (i32.store16 offset=38 (local.get $out) (i32.const 0))
    (i32.store offset=40 (local.get $out) (i32.add (local.get $an) (local.get $bn)))
    (memory.copy (i32.add (local.get $out) (i32.const 44)) (local.get $rp) (local.get $rn))
    (memory.copy (i32.add (i32.add (local.get $out) (i32.const 44)) (local.get $rn)) (local.get $ap) (local.get $an))
    (memory.copy (i32.add (i32.add (i32.add (local.get $out) (i32.const 44)) (local.get $rn)) (local.get $an)) (local.get $bp) (local.get $bn))
    (call $send (local.get $out) (i32.add (i32.add (i32.add (i32.const 44) (local.get $rn)) (local.get $an)) (local.get $bn))))

  (data (i32.const 16) "done")

  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $sp i32) (local $sn i32) (local $cp i32) (local $cn i32)
    (local $op i32) (local $on i32) (local $rest i32) (local $restn i32) (local $hn i32)
    (local.set $sp (i32.add (local.get $in) (i32.const 44)))
    (local.set $sn (i32.load8_u offset=36 (local.get $in)))
    (local.set $cp (i32.add (i32.add (local.get $sp) (local.get $sn)) (i32.load8_u offset=37 (local.get $in))))
    (local.set $cn (i32.load offset=40 (local.get $in)))
    ;; origin: a runtime sender itself, else the content's first word
    (if (i32.and (i32.gt_u (local.get $sn) (i32.const 0)) (i32.eq (i32.load8_u (local.get $sp)) (i32.const 64)))
      (then
        (local.set $op (local.get $sp)) (local.set $on (local.get $sn))
        (local.set $rest (local.get $cp)) (local.set $restn (local.get $cn)))
      (else
        (local.set $op (local.get $cp))
        (local.set $on (call $space (local.get $cp) (local.get $cn)))
        (if (i32.lt_u (local.get $on) (local.get $cn))
          (then
            (local.set $rest (i32.add (i32.add (local.get $cp) (local.get $on)) (i32.const 1)))
            (local.set $restn (i32.sub (i32.sub (local.get $cn) (local.get $on)) (i32.const 1)))))))
    (if (i32.eqz (local.get $restn))
      (then (return (call $emit (local.get $in) (i32.const 1) (i32.const 1)
        (local.get $op) (local.get $on) (i32.const 16) (i32.const 4) (i32.const 0) (i32.const 0)))))
    ;; next hop, and the hops after it (with their leading space)
    (local.set $hn (call $space (local.get $rest) (local.get $restn)))
    (call $emit (local.get $in) (i32.load8_u offset=1 (local.get $in)) (i32.const 0)
      (local.get $rest) (local.get $hn)
      (local.get $op) (local.get $on)
      (i32.add (local.get $rest) (local.get $hn)) (i32.sub (local.get $restn) (local.get $hn))))
)
