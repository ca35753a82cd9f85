;; passthrough: the smallest plugin that follows plugins/ABI.md. It passes
;; every update and measures the host's cost of the ABI round trip in the
;; benchmarks. No _initialize, no varwatch_init: the host must cope with
;; both missing (and refuse params, since nothing could read them).
(module
  (memory (export "memory") 1)

  (func (export "varwatch_abi_version") (result i32) (i32.const 1))

  ;; The input buffer starts at 64 KiB; the output goes right after the
  ;; input. A batch of n updates has at least 4 + 24n bytes and its verdicts
  ;; 4 + n, so twice the input size is always enough.
  (func (export "varwatch_alloc") (param $size i32) (result i32)
    (local $need i32)
    (local.set $need (i32.add (i32.const 65536) (i32.shl (local.get $size) (i32.const 1))))
    (if (i32.gt_u (local.get $need) (i32.shl (memory.size) (i32.const 16)))
      (then
        (drop (memory.grow
          (i32.sub
            (i32.shr_u (i32.add (local.get $need) (i32.const 65535)) (i32.const 16))
            (memory.size))))))
    (i32.const 65536))

  ;; Output: the input's count, then one pass byte (0) per update.
  (func (export "varwatch_filter") (param $ptr i32) (param $len i32) (result i64)
    (local $out i32) (local $n i32)
    (local.set $n (i32.load (local.get $ptr)))
    (local.set $out (i32.add (local.get $ptr) (local.get $len)))
    (i32.store (local.get $out) (local.get $n))
    (memory.fill (i32.add (local.get $out) (i32.const 4)) (i32.const 0) (local.get $n))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (i32.add (local.get $n) (i32.const 4)))))
)
