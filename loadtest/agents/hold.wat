;; hold: the hop agent (hop.wat), and it holds conversations open
;; (scenario active_conversations). A request whose target length is 0
;; carries [0][hold_ms u32][seq u64][scheduled u64]: the agent sets a durable
;; timer of hold_ms whose content is [origin length u8][origin][seq]
;; [scheduled], and answers nothing now. When the timer fires, its `inform`
;; from @timer has the content of a hop's forwarded `inform`, so the agent
;; answers the origin with an `agree` carrying [seq][scheduled], as a hop
;; does. Until then the conversation is open: its timer row in SQLite and
;; in the shard's timer heap, the generator waiting for its answer.
;; Every other message is handled as hop.wat handles it.
(module
  (import "caxton" "send" (func $send (param i32 i32) (result i32)))
  (import "caxton" "timer_set" (func $timer_set (param i64 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (func (export "caxton_abi_version") (result i32) (i32.const 2))
  ;; a fixed inbox at 1024, as large as caxton_alloc takes (docs/ABI.md)
  (func (export "caxton_inbox_ptr") (result i32) (i32.const 1024))
  (func (export "caxton_inbox_bytes") (result i32) (i32.const 4000))
  (func (export "caxton_alloc") (param $len i32) (result i32)
    (if (i32.gt_u (local.get $len) (i32.const 4000)) (then (return (i32.const -1))))
    (i32.const 1024))
  (func (export "caxton_handle") (param $in i32) (param $len i32) (result i32)
    (local $sp i32) (local $sn i32) (local $cp i32) (local $n i32) (local $out i32)
    (local.set $sp (i32.add (local.get $in) (i32.const 76)))
    (local.set $sn (i32.load8_u offset=68 (local.get $in)))
    (local.set $cp (i32.add (i32.add (i32.add (local.get $sp) (local.get $sn)) (i32.load8_u offset=69 (local.get $in))) (i32.load8_u offset=70 (local.get $in))))
    (local.set $n (i32.load8_u (local.get $cp)))
    (local.set $out (i32.const 8192))
    (i32.store8 (local.get $out) (i32.const 2))
    (i64.store offset=12 (local.get $out) (i64.load offset=12 (local.get $in)))
    (if (i32.and (i32.eqz (i32.load8_u offset=1 (local.get $in))) (i32.eqz (local.get $n)))
      (then
        ;; hold: a timer whose content is [origin length][origin][seq][scheduled],
        ;; built at 12288, away from the envelope at $out, whose header
        ;; bytes the hop path relies on staying zero
        (i32.store8 (i32.const 12288) (local.get $sn))
        (memory.copy (i32.const 12289) (local.get $sp) (local.get $sn))
        (memory.copy (i32.add (i32.const 12289) (local.get $sn)) (i32.add (local.get $cp) (i32.const 5)) (i32.const 16))
        (return (select (i32.const 0) (i32.const -3)
          (i64.gt_s
            (call $timer_set (i64.extend_i32_u (i32.load (i32.add (local.get $cp) (i32.const 1)))) (i32.const 12288) (i32.add (local.get $sn) (i32.const 17)))
            (i64.const 0))))))
    (if (i32.eqz (i32.load8_u offset=1 (local.get $in)))
      (then
        ;; request: forward to the target, carrying our sender as the origin
        (i32.store8 offset=1 (local.get $out) (i32.const 1))
        (i32.store8 offset=69 (local.get $out) (local.get $n))
        (i32.store offset=72 (local.get $out) (i32.add (local.get $sn) (i32.const 17)))
        (memory.copy (i32.add (local.get $out) (i32.const 76)) (i32.add (local.get $cp) (i32.const 1)) (local.get $n))
        (i32.store8 (i32.add (i32.add (local.get $out) (i32.const 76)) (local.get $n)) (local.get $sn))
        (memory.copy (i32.add (i32.add (local.get $out) (i32.const 77)) (local.get $n)) (local.get $sp) (local.get $sn))
        (memory.copy (i32.add (i32.add (i32.add (local.get $out) (i32.const 77)) (local.get $n)) (local.get $sn))
          (i32.add (i32.add (local.get $cp) (i32.const 1)) (local.get $n)) (i32.const 16))
        (return (call $send (local.get $out) (i32.add (i32.add (i32.const 93) (local.get $n)) (local.get $sn))))))
    ;; inform: answer the origin with [seq][scheduled]
    (i32.store8 offset=1 (local.get $out) (i32.const 7))
    (i32.store8 offset=69 (local.get $out) (local.get $n))
    (i32.store offset=72 (local.get $out) (i32.const 16))
    (memory.copy (i32.add (local.get $out) (i32.const 76)) (i32.add (local.get $cp) (i32.const 1)) (local.get $n))
    (memory.copy (i32.add (i32.add (local.get $out) (i32.const 76)) (local.get $n))
      (i32.add (i32.add (local.get $cp) (i32.const 1)) (local.get $n)) (i32.const 16))
    (call $send (local.get $out) (i32.add (i32.const 92) (local.get $n))))
)
