#!/usr/bin/env bash
# `nabla fit`, `nabla train`, `nabla evaluate`, `nabla predict` end to end on
# small generated data: a known neuron recovered, a network trained from CSV
# with its plot (parsed as XML) and log, bit-exact resume, and the error paths
# (exit 2, a message naming the problem, no file half-written).
set -u
NABLA=${NABLA:-./nabla}
PY=/usr/bin/python3  # not a pyenv shim: it starts in a tenth of the time
[ -x "$PY" ] || PY=python3
passed=0 failed=0
fail() { failed=$((failed + 1)); printf 'FAIL: %s\n' "$*" >&2; }
ok() { passed=$((passed + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect_err PATTERN ARGS...: exit 2, stderr matches PATTERN
expect_err() {
    local pattern=$1; shift
    local rc
    "$NABLA" "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    if [ "$rc" -eq 2 ] && grep -qE -- "$pattern" "$tmp/err"; then ok
    else fail "nabla $* -> rc=$rc err=[$(cat "$tmp/err")] want /$pattern/"; fi
}

# --- nabla fit: the derivatives it prints are nabla diff's; it recovers a known neuron
out=$("$NABLA" fit --generate 200,3 --seed 1 --epochs 2000 --every 500 2>&1); rc=$?
dw=$("$NABLA" diff 'sum((y - max(0, X*w + b)).^2)/N' --wrt w --let 'X: matrix(N, n); y: vector(N); w: vector(n); b: scalar')
db=$("$NABLA" diff 'sum((y - max(0, X*w + b)).^2)/N' --wrt b --let 'X: matrix(N, n); y: vector(N); w: vector(n); b: scalar')
if [ "$rc" -eq 0 ] && grep -qxF "∂C/∂w = $dw" <<<"$out" && grep -qxF "∂C/∂b = $db" <<<"$out"; then ok
else fail "fit derivatives: rc=$rc [$out]"; fi
[ "$(grep -c '^epoch ' <<<"$out")" -eq 4 ] && ok || fail "fit: 4 cost lines expected [$out]"
err=$(sed -n 's/^largest parameter error: //p' <<<"$out")
awk -v e="$err" 'BEGIN { exit !(e != "" && e + 0 < 1e-9) }' && ok || fail "fit did not recover the neuron: error '$err'"
# the cost falls epoch after epoch
"$PY" - "$out" <<'EOF' && ok || fail "fit: cost does not fall"
import sys
c = [float(l.split('= ')[1]) for l in sys.argv[1].splitlines() if l.startswith('epoch')]
sys.exit(0 if all(b <= a for a, b in zip(c, c[1:])) and c[-1] < 1e-12 else 1)
EOF
# the same fit in the interpreter (--no-native), and without a compiler (the interpreter too)
for run in "--no-native" "NABLA_CC=/nonexistent/cc"; do
    case $run in
    --*) out=$("$NABLA" fit --generate 200,3 --seed 1 --epochs 2000 --every 2000 "$run" 2>&1) ;;
    *) out=$(env "$run" "$NABLA" fit --generate 200,3 --seed 1 --epochs 2000 --every 2000 2>&1) ;;
    esac
    err=$(sed -n 's/^largest parameter error: //p' <<<"$out")
    awk -v e="$err" 'BEGIN { exit !(e != "" && e + 0 < 1e-9) }' && ok || fail "fit ($run): '$out'"
done
# with noise the fit is close, not exact
out=$("$NABLA" fit --generate 2000,2 --seed 2 --noise 0.05 --epochs 1500 --every 1500 2>&1)
err=$(sed -n 's/^largest parameter error: //p' <<<"$out")
awk -v e="$err" 'BEGIN { exit !(e != "" && e + 0 > 1e-6 && e + 0 < 0.05) }' && ok || fail "noisy fit: error '$err' [$out]"
# from CSV, with another model written in nabla's language
"$PY" - "$tmp/lin.csv" <<'EOF'
import sys
with open(sys.argv[1], 'w') as f:
    f.write('x1,x2,y\n')
    for i in range(40):
        x1, x2 = (i % 7) / 7 - 0.5, (i % 5) / 5 - 0.5
        f.write('%r,%r,%r\n' % (x1, x2, 2 * x1 - 3 * x2 + 0.5))
EOF
out=$("$NABLA" fit --data "$tmp/lin.csv" --model 'sum((y - (X*w + b)).^2)/N' --params w,b --epochs 3000 --every 3000 2>&1)
grep -qE '^w = \[2(\.0+|), -3(\.0+|)\]$' <<<"$out" && grep -qx 'b = 0.5' <<<"$out" && ok || fail "fit linear model: [$out]"
# a parameter name of 100 letters is printed whole (labels were cut at 60 bytes)
long=$(printf 'w%.0s' $(seq 100))
out=$("$NABLA" fit --generate 50,3 --model "sum((y - max(0, X*$long + b)).^2)/N" --params "$long,b" \
      --let "X: matrix(N, n); y: vector(N); $long: vector(n); b: scalar" --epochs 3 --every 3 2>&1)
grep -qE "^$long = \[" <<<"$out" && ok || fail "fit: long parameter name cut [$out]"
expect_err "give exactly one of --data and --generate" fit
expect_err "invalid --generate '3'" fit --generate 3
expect_err "the cost became (NaN|infinite) at epoch" fit --generate 50,2 --lr 1e200
expect_err "cannot open '$tmp/none.csv'" fit --data "$tmp/none.csv"

# --- nabla train on a CSV problem: three blobs in 2-D
"$PY" - "$tmp" <<'EOF'
import random, sys
random.seed(5)
for name, n in (('train', 300), ('test', 90)):
    with open('%s/%s.csv' % (sys.argv[1], name), 'w') as f:
        for i in range(n):
            k = i % 3
            cx, cy = [(0, 1), (1, -1), (-1, -1)][k]
            f.write('%.4f,%.4f,%d\n' % (cx + random.gauss(0, 0.3), cy + random.gauss(0, 0.3), k))
EOF
train=(train --data "$tmp/train.csv" --test "$tmp/test.csv" --layers 2-16-3 --batch 32 --lr 0.2 --seed 3)
"$NABLA" "${train[@]}" --epochs 6 --save "$tmp/full.nbm" --plot "$tmp/curves.svg" --log "$tmp/metrics.csv" >"$tmp/full.out" 2>"$tmp/err"
rc=$?
[ "$rc" -eq 0 ] && [ "$(grep -cE '^epoch [1-6]/6  loss [0-9.]+  train accuracy [0-9.]+  test accuracy [0-9.]+  [0-9.]+ s$' "$tmp/full.out")" -eq 6 ] && ok \
    || fail "train: rc=$rc [$(cat "$tmp/full.out" "$tmp/err")]"
grep -q 'test accuracy 0.9[5-9]\|test accuracy 1.0000' <(tail -1 "$tmp/full.out") && ok || fail "train: low accuracy [$(tail -1 "$tmp/full.out")]"
[ ! -e "$tmp/full.nbm.tmp" ] && ok || fail "temporary checkpoint left behind"
# the SVG is well-formed XML with the three series, one point per epoch
"$PY" - "$tmp/curves.svg" <<'EOF' && ok || fail "plot is not the expected SVG"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == '{http://www.w3.org/2000/svg}svg'
lines = {p.get('id'): p.get('points').split() for p in root.iter('{http://www.w3.org/2000/svg}polyline')}
assert set(lines) == {'loss', 'train-accuracy', 'test-accuracy'}, lines
assert all(len(v) == 6 for v in lines.values()), lines
EOF
"$PY" - "$tmp/metrics.csv" "$tmp/full.out" <<'EOF' && ok || fail "log does not match the printed epochs"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
printed = [l.split() for l in open(sys.argv[2])]
assert [int(r['epoch']) for r in rows] == list(range(1, 7))
assert all('%.4f' % float(r['loss']) == p[3] for r, p in zip(rows, printed))
EOF
# resume: 2 epochs, then 4 more from the checkpoint, equals 6 in one go (bit-exact)
"$NABLA" "${train[@]}" --epochs 2 --save "$tmp/part.nbm" >"$tmp/part.out" 2>&1
"$NABLA" train --data "$tmp/train.csv" --test "$tmp/test.csv" --resume "$tmp/part.nbm" --epochs 6 --save "$tmp/part.nbm" >>"$tmp/part.out" 2>&1
strip() { sed 's|^epoch \([0-9]*\)/[0-9]*|\1|; s/  [0-9.]* s$//' "$1"; }
cmp -s "$tmp/full.nbm" "$tmp/part.nbm" && diff -q <(strip "$tmp/full.out") <(strip "$tmp/part.out") >/dev/null && ok \
    || fail "resume is not bit-exact: [$(cat "$tmp/part.out")]"
# --epochs 0 --save writes the initialised network (nothing printed); resumed
# for 6 epochs it is the run above
"$NABLA" "${train[@]}" --epochs 0 --save "$tmp/init.nbm" >"$tmp/init.out" 2>&1 && [ -s "$tmp/init.nbm" ] \
    && [ ! -s "$tmp/init.out" ] && ok || fail "--epochs 0 --save: [$(cat "$tmp/init.out")]"
"$NABLA" train --data "$tmp/train.csv" --test "$tmp/test.csv" --resume "$tmp/init.nbm" --epochs 6 --save "$tmp/init.nbm" >"$tmp/init.out" 2>&1
cmp -s "$tmp/full.nbm" "$tmp/init.nbm" && ok || fail "the initial checkpoint does not resume to the full run"
# same seed, same losses; also with 2 threads
"$NABLA" "${train[@]}" --epochs 6 >"$tmp/again.out" 2>&1
diff -q <(strip "$tmp/full.out") <(strip "$tmp/again.out") >/dev/null && ok || fail "not reproducible"
"$NABLA" "${train[@]}" --epochs 2 --threads 2 --dtype f64 >"$tmp/t2a.out" 2>&1
"$NABLA" "${train[@]}" --epochs 2 --threads 2 --dtype f64 >"$tmp/t2b.out" 2>&1
diff -q <(strip "$tmp/t2a.out") <(strip "$tmp/t2b.out") >/dev/null && ok || fail "not reproducible with 2 threads"
"$NABLA" "${train[@]}" --epochs 1 --threads 2 --quiet >"$tmp/q.out" 2>&1 && [ "$(wc -l <"$tmp/q.out")" -eq 1 ] && ok || fail "--quiet, --threads 2: [$(cat "$tmp/q.out")]"
# a progress bar on a terminal (script(1) gives a pseudo-terminal), none in a pipe
if command -v script >/dev/null; then
    script -qec "$NABLA ${train[*]} --epochs 1" /dev/null >"$tmp/tty.out" 2>&1
    grep -qE $'\r\033\\[Kepoch 1/1 \\[#+\\] 10/10  [0-9]+ ex/s  loss [0-9.]+  ETA [0-9]+s' "$tmp/tty.out" \
        && grep -q 'epoch 1/1  loss' "$tmp/tty.out" && ok || fail "no progress bar on a terminal: [$(od -c "$tmp/tty.out" | head)]"
fi
grep -q $'\r' "$tmp/full.out" && fail "progress bar in a pipe" || ok
# evaluate and predict
out=$("$NABLA" evaluate --load "$tmp/full.nbm" --data "$tmp/test.csv")
acc=$(tail -1 "$tmp/full.out" | sed 's/.*test accuracy \([0-9.]*\).*/\1/')
grep -qx "accuracy: $acc" <<<"$out" && [ "$(wc -l <<<"$out")" -eq 7 ] && ok || fail "evaluate: [$out] want accuracy $acc"
"$PY" - "$out" <<'EOF' && ok || fail "confusion matrix does not sum to 90"
import sys
rows = sys.argv[1].splitlines()[-3:]
sys.exit(0 if sum(int(v) for r in rows for v in r.split()) == 90 else 1)
EOF
printf '0,1\n1,-1\n-1,-1\n' >"$tmp/in.csv"
out=$("$NABLA" predict --load "$tmp/full.nbm" --input "$tmp/in.csv")
[ "$out" = $'0\n1\n2' ] && ok || fail "predict: [$out]"
"$NABLA" train --print-model --layers 784-256-10 >"$tmp/model.out" 2>&1
grep -qxF "network:  H1 = relu(X*W1 + b1'); Z = H1*W2 + b2'; softmax_xent(Z, Y)" "$tmp/model.out" && grep -q '^∂loss/∂W1 = ' "$tmp/model.out" \
    && grep -q '^∂loss/∂b2 = ' "$tmp/model.out" && ok || fail "--print-model: [$(cat "$tmp/model.out")]"

# --- errors: a clear message, exit 2, nothing half-written
expect_err "Fashion-MNIST not found: missing $tmp/train-images-idx3-ubyte.gz.*apt-get install dataset-fashion-mnist" \
    train --data fashion-mnist --data-dir "$tmp"
expect_err "first layer takes 5 inputs but the training data has 2 features" train --data "$tmp/train.csv" --layers 5-3-3
expect_err "label 2 is not a class in 0..1" train --data "$tmp/train.csv" --layers 2-3-2
expect_err "the last layer needs at least 2 classes, not 1" train --data "$tmp/train.csv" --layers 2-1
expect_err "invalid --layers '2-0-3'" train --data "$tmp/train.csv" --layers 2-0-3
expect_err "invalid --optimizer 'rmsprop'" train --data "$tmp/train.csv" --optimizer rmsprop
expect_err "--lr cannot change a resumed checkpoint" train --data "$tmp/train.csv" --resume "$tmp/full.nbm" --lr 1
cp "$tmp/full.nbm" "$tmp/keep.nbm"
expect_err "the loss became (NaN|infinite) at step [0-9]+ of epoch 1; stopped; the last good checkpoint is kept" \
    train --data "$tmp/train.csv" --layers 2-16-3 --lr 1e38 --save "$tmp/keep.nbm"
cmp -s "$tmp/full.nbm" "$tmp/keep.nbm" && [ ! -e "$tmp/keep.nbm.tmp" ] && ok || fail "NaN run touched the checkpoint"
head -c 100 "$tmp/full.nbm" >"$tmp/trunc.nbm"
expect_err "trunc.nbm' is truncated" evaluate --load "$tmp/trunc.nbm" --data "$tmp/test.csv"
"$PY" -c "
import sys; b = bytearray(open(sys.argv[1], 'rb').read()); b[200] ^= 1; open(sys.argv[2], 'wb').write(b)" "$tmp/full.nbm" "$tmp/flip.nbm"
expect_err "flip.nbm' is corrupted \(CRC-32 mismatch\)" predict --load "$tmp/flip.nbm" --input "$tmp/in.csv"
printf '0,1,2\n' >"$tmp/wide.csv"
expect_err "takes 2 inputs but the input has 3" predict --load "$tmp/full.nbm" --input "$tmp/wide.csv"
printf '\0\0\x08\x03\0\0\0\x05\0\0\0\x1c\0\0\0\x1c' >"$tmp/short-idx"
expect_err "short-idx' is truncated: its header promises 3920 entries, it holds 0" predict --load "$tmp/full.nbm" --input "$tmp/short-idx"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
