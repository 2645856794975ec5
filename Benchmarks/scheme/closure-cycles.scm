; The Scheme benchmark (BENCHMARKS.md, "Scheme"): a million closures that each close
; over their own environment. make-counter's environment binds `next`, and `next`
; holds that environment: a cycle, closure <-> environment. Each one is dropped after
; two calls. A tracing collector frees them; reference counting never does.
(define (make-counter)
  (define count 0)
  (define (next) (set! count (+ count 1)) count)
  next)

(define (churn i acc)
  (if (= i 0)
      acc
      (let ((k (make-counter)))
        (k)
        (churn (- i 1) (+ acc (k))))))

(display (churn 1000000 0))
(newline)
