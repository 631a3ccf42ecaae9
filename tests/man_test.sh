#!/usr/bin/env bash
# The man page (docs/nabla.1) documents the command as it is: every command
# that `nabla --help` lists has a ".SS nabla COMMAND" section, and that section
# names every option that `nabla COMMAND --help` lists (its usage line and its
# option lines) and no other; --help and --version are documented; the page
# renders without warnings.
set -u
NABLA=${NABLA:-./nabla}
page=docs/nabla.1
passed=0 failed=0
fail() { failed=$((failed + 1)); printf 'FAIL: %s\n' "$*" >&2; }
ok() { passed=$((passed + 1)); }

# the commands: the indented words under "commands:" in nabla --help
commands=$("$NABLA" --help | sed -n '/^commands:/,/^[^ ]/p' | sed -n 's/^  \([a-z][a-z0-9_-]*\) .*/\1/p')
[ -n "$commands" ] && ok || fail "no commands found in 'nabla --help'"

for cmd in $commands; do
    # the command's section: from its .SS line to the next .SS or .SH
    section=$(awk -v cmd="$cmd" '
        /^\.S[SH] / { inside = ($0 ~ "^\\.SS \"?nabla " cmd "([ \"]|$)") ; if (inside) found = 1 }
        inside { print }
        END { if (!found) exit 1 }' "$page")
    if [ $? -ne 0 ]; then
        fail "$page has no section '.SS nabla $cmd'"
        continue
    fi
    ok
    help=$("$NABLA" "$cmd" --help) || { fail "nabla $cmd --help failed"; continue; }
    options=$(printf '%s\n' "$help" | grep -E '^(usage:|  --)' | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u)
    # and the section names no option the command does not have
    documented=$(printf '%s\n' "$section" | grep -oP '\\-\\-[a-z0-9]+(\\-[a-z0-9]+)*' | sed 's/\\-/-/g' | sort -u)
    for opt in $documented; do
        if printf '%s\n' $options --help | grep -qx -- "$opt"; then ok
        else fail "$page: section 'nabla $cmd' documents $opt, which 'nabla $cmd --help' does not list"; fi
    done
    for opt in $options; do
        # in the page an option is written with escaped dashes: \-\-name, not followed by more name
        man_form=${opt//-/\\-}
        if printf '%s\n' "$section" | grep -qP -- "\\Q$man_form\\E(?![a-z0-9]|\\\\-)"; then ok
        else fail "$page: section 'nabla $cmd' does not document $opt"; fi
    done
done

for opt in help version; do
    if grep -qF -- ".B \\-\\-$opt" "$page"; then ok; else fail "$page does not document --$opt"; fi
done

if command -v man >/dev/null; then # (man-db is not on a minimal system)
    warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
    if [ -z "$warnings" ]; then ok; else fail "man reports: $warnings"; fi
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
