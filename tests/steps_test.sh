#!/usr/bin/env bash
# `nabla diff --steps` goldens: every identity and worked example of
# docs/reference.md (tests/golden/steps/cases.txt: EXPR|VARS|DECLS), in both
# layouts and both languages, compared with tests/golden/steps/LANG-LAYOUT.txt;
# each derivation's last line must be plain `nabla diff`'s output; the LaTeX
# form of every case compiles with pdflatex (amsmath, amssymb, bm) where
# pdflatex is installed.  `tests/steps_test.sh --regenerate` rewrites the goldens.
set -u
cd "$(dirname "$0")/.."
NABLA=${NABLA:-./nabla}
dir=tests/golden/steps
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

derivations() { # lang layout
    while IFS='|' read -r expr vars decls; do
        echo "### nabla diff '$expr' --wrt $vars${decls:+ --let '$decls'} --layout $2 --steps --lang $1"
        "$NABLA" diff "$expr" --wrt "$vars" ${decls:+--let "$decls"} --layout "$2" --steps --lang "$1" 2>&1
        echo
    done <"$dir/cases.txt"
}

for lang in en zh; do
    for layout in numerator denominator; do
        golden=$dir/$lang-$layout.txt
        if [ "${1:-}" = --regenerate ]; then derivations $lang $layout >"$golden"; fi
        if derivations $lang $layout | cmp -s - "$golden"; then ok; else
            bad "$lang $layout differs from $golden:"
            derivations $lang $layout | diff "$golden" - | head -20
        fi
    done
done

# The other formats and the user's definitions, on the neuron and its cost.
formats() {
    local neuron='w, x: vector(n); b: scalar' data='X: matrix(N, n); w: vector(n); y: vector(N); b: scalar'
    for args in "ascii en" "latex en" "markdown en" "markdown zh"; do
        set -- $args
        echo "### --format $1 --lang $2"
        "$NABLA" diff "max(0, w'*x + b)" --wrt w --let "$neuron" --steps --format "$1" --lang "$2" 2>&1
        "$NABLA" diff 'u = X*w + b; e = y - max(0, u); C = sum(e.^2)/N; C' --wrt w --let "$data" --steps \
            --format "$1" --lang "$2" --layout denominator 2>&1
    done
}
if [ "${1:-}" = --regenerate ]; then formats >"$dir/formats.txt"; fi
if formats | cmp -s - "$dir/formats.txt"; then ok; else
    bad "the formats differ from $dir/formats.txt:"
    formats | diff "$dir/formats.txt" - | head -20
fi

# The last line of every derivation is plain diff's result (every format: test_steps.c).
while IFS='|' read -r expr vars decls; do
    for layout in numerator denominator; do
        for format in unicode; do
            plain=$("$NABLA" diff "$expr" --wrt "$vars" ${decls:+--let "$decls"} --layout $layout --format $format)
            last=$("$NABLA" diff "$expr" --wrt "$vars" ${decls:+--let "$decls"} --layout $layout --format $format --steps | tail -n 1)
            case "$last" in *" = $plain") ok ;; *) bad "$expr --wrt $vars ($layout, $format): last line '$last', diff gives '$plain'" ;; esac
        done
    done
done <"$dir/cases.txt"

# Errors
"$NABLA" diff 'sin(x)' --wrt x --steps --lang fr >/dev/null 2>/tmp/steps_err.$$ && bad "--lang fr accepted" || {
    grep -q "unknown language 'fr' (available: en, zh)" /tmp/steps_err.$$ && ok || bad "--lang fr: $(cat /tmp/steps_err.$$)"; }
"$NABLA" diff 'sin(x)' --wrt x --lang zh >/dev/null 2>&1 && bad "--lang without --steps accepted" || ok
"$NABLA" diff 'sin(x)' --wrt x --format markdown >/dev/null 2>&1 && bad "markdown without --steps accepted" || ok
"$NABLA" diff 'sin(x)' --wrt x --steps --at 'x=1' >/dev/null 2>&1 && bad "--steps with --at accepted" || ok
rm -f /tmp/steps_err.$$

# LaTeX compiles
if command -v pdflatex >/dev/null 2>&1; then
    tex=$(mktemp -d)
    {
        printf '%s\n' '\documentclass{article}' '\usepackage{amsmath,amssymb,bm}' '\begin{document}'
        while IFS='|' read -r expr vars decls; do
            for layout in numerator denominator; do
                "$NABLA" diff "$expr" --wrt "$vars" ${decls:+--let "$decls"} --layout $layout --steps --format latex
            done
        done <"$dir/cases.txt"
        # more of the simplifier's rules (their names are transliterated to LaTeX)
        for expr in 'sum(sigmoid(w .* x))' 'sum(exp(w) ./ (1 + exp(w)))' 'sum(softmax(w))' 'norm2(w)' \
            "w'*diag(x)*w" 'mean(w .* x)' 'w .^ 2 .* w .^ 3'; do
            "$NABLA" diff "$expr" --wrt w --let 'w, x: vector(n)' --steps --format latex || bad "--steps --format latex of $expr"
        done
        echo '\end{document}'
    } >"$tex/steps.tex"
    if (cd "$tex" && pdflatex -interaction=nonstopmode -halt-on-error steps.tex >log.txt 2>&1); then ok; else
        bad "the LaTeX derivations do not compile: $(grep -m3 -A3 '^!' "$tex/log.txt")"
    fi
    rm -rf "$tex"
else
    echo "steps_test.sh: SKIP the pdflatex check: pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-extra)"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
