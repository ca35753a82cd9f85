;; faulty: a pass-through plugin that misbehaves on demand, for the fault
;; tests. The first update's new value picks the fault when it is a float:
;;   -1 trap (unreachable)        -2 endless loop
;;   -3 memory bomb (grows memory until refused, then traps)
;;   -4 garbage: verdict count off by one
;;   -5 garbage: output pointer outside memory
;;   -6 garbage: unknown action byte
;;   -7 garbage: zero-length output (the ABI's "failed")
;;   -8 exit: calls WASI proc_exit(3)
;; anything else passes the batch. _initialize sets $ready; filter traps
;; without it, proving the host ran the reactor initializer.
(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (global $ready (mut i32) (i32.const 0))

  (func (export "_initialize") (global.set $ready (i32.const 1)))
  (func (export "varwatch_abi_version") (result i32) (i32.const 1))

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

  (func $pass (param $ptr i32) (param $len i32) (param $count i32) (result i64)
    (local $out i32) (local $n i32)
    (local.set $n (i32.load (local.get $ptr)))
    (local.set $out (i32.add (local.get $ptr) (local.get $len)))
    (i32.store (local.get $out) (local.get $count))
    (memory.fill (i32.add (local.get $out) (i32.const 4)) (i32.const 0) (local.get $n))
    (i64.or
      (i64.shl (i64.extend_i32_u (local.get $out)) (i64.const 32))
      (i64.extend_i32_u (i32.add (local.get $n) (i32.const 4)))))

  (func (export "varwatch_filter") (param $ptr i32) (param $len i32) (result i64)
    (local $mode f64) (local $n i32)
    (if (i32.eqz (global.get $ready)) (then unreachable))
    (local.set $n (i32.load (local.get $ptr)))
    ;; first record: count(4) size(4) fixed(20) -> tag at +28, float at +29
    (if (i32.and (i32.gt_u (local.get $n) (i32.const 0))
                 (i32.eq (i32.load8_u offset=28 (local.get $ptr)) (i32.const 1)))
      (then (local.set $mode (f64.load offset=29 (local.get $ptr)))))
    (if (f64.eq (local.get $mode) (f64.const -1)) (then unreachable))
    (if (f64.eq (local.get $mode) (f64.const -2)) (then (loop $forever (br $forever))))
    (if (f64.eq (local.get $mode) (f64.const -3))
      (then
        (loop $grow
          (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
        unreachable))
    (if (f64.eq (local.get $mode) (f64.const -4))
      (then (return (call $pass (local.get $ptr) (local.get $len) (i32.add (local.get $n) (i32.const 1))))))
    (if (f64.eq (local.get $mode) (f64.const -5))
      (then (return (i64.const 0xfffffff000000010))))
    (if (f64.eq (local.get $mode) (f64.const -6))
      (then
        (drop (call $pass (local.get $ptr) (local.get $len) (local.get $n)))
        (i32.store8 offset=4 (i32.add (local.get $ptr) (local.get $len)) (i32.const 9))
        (return (call $packed (i32.add (local.get $ptr) (local.get $len)) (i32.add (local.get $n) (i32.const 4))))))
    (if (f64.eq (local.get $mode) (f64.const -7)) (then (return (i64.const 0))))
    (if (f64.eq (local.get $mode) (f64.const -8)) (then (call $proc_exit (i32.const 3))))
    (call $pass (local.get $ptr) (local.get $len) (local.get $n)))

  (func $packed (param $p i32) (param $l i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32)) (i64.extend_i32_u (local.get $l))))
)
