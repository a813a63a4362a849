;; fib.wat - the module of the wasm2c example tests: i32 functions with 0, 1
;; and 2 arguments, one that traps, and an exported memory (skipped).
(module
  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "answer") (result i32) (i32.const 42))
  (func (export "boom") (result i32) unreachable)
  (memory (export "mem") 1))
