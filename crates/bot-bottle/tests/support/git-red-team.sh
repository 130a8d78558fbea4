# Pushes that carry a value past `git log -p` — each found by a red team
# from inside a real bottle. Sourced by tests/git_gate.rs (a real git
# through the gate to a real sshd) and by the escape suite (from inside a
# bottle). Each function runs in a clone whose `origin` is the gate, with
# $V the value to smuggle and $R a run-unique suffix, makes what it needs
# and pushes; the push's exit status is the function's.

ident='A U Thor <author@example.com> 1700000000 +0000'

# A raw commit object on top of origin/main; its headers and message as given.
raw_commit() {
    git fetch -q origin
    printf 'tree %s\nparent %s\nauthor %s\ncommitter %s\n%b' \
        "$(git rev-parse origin/main^{tree})" "$(git rev-parse origin/main)" "$ident" "$ident" "$1" |
        git hash-object -t commit -w --stdin --literally
}

# An octopus merge whose own tree adds the value (remerge-diff shows no
# diff for a merge of three parents).
octopus_merge() {
    for b in o1 o2; do
        git checkout -q -b "$b-$R" origin/main && echo "$b" > "$b.txt" && git add "$b.txt" && git commit -qm "$b" || return 90
    done
    git checkout -q -b "oct-$R" origin/main && git merge -q --no-commit "o1-$R" "o2-$R" || return 91
    printf 'TOKEN=%s\n' "$V" > octo.env && git add octo.env && git commit -qm octopus || return 92
    git push origin "HEAD:refs/heads/oct-$R"
}

# An annotated tag pointing straight at a blob: no commit to log.
tag_of_a_blob() {
    b=$(printf 'TOKEN=%s\n' "$V" | git hash-object -w --stdin) || return 90
    git tag -a "blob-$R" -m release "$b" || return 91
    git push origin "refs/tags/blob-$R"
}

# A lightweight tag pointing straight at a tree.
tag_of_a_tree() {
    b=$(printf 'TOKEN=%s\n' "$V" | git hash-object -w --stdin) || return 90
    t=$(printf '100644 blob %s\tconfig.env\n' "$b" | git mktree) || return 91
    git push origin "$t:refs/tags/tree-$R"
}

# A NUL byte before the value: the log says "Binary files differ".
a_nul_byte_in_a_file() {
    printf 'header\0\nTOKEN=%s\n' "$V" > data.bin && git add data.bin && git commit -qm 'add data' || return 90
    git push origin "HEAD:refs/heads/nul-$R"
}

# A .gitattributes that marks the file binary for diff.
a_file_marked_binary() {
    printf '*.env -diff\n' > .gitattributes && printf 'TOKEN=%s\n' "$V" > app.env &&
        git add .gitattributes app.env && git commit -qm 'settings' || return 90
    git push origin "HEAD:refs/heads/attr-$R"
}

# The commit message goes on after a NUL (%B stops there).
a_nul_in_the_commit_message() {
    c=$(raw_commit "\nsubject\0$V\n") || return 90
    git push origin "$c:refs/heads/msg-$R"
}

# An extra commit header.
an_extra_commit_header() {
    c=$(raw_commit "x-note $V\n\nclean subject\n") || return 90
    git push origin "$c:refs/heads/hdr-$R"
}

# The author's name and the committer's email.
the_author_and_committer() {
    git -c user.name="$V" -c user.email="ci-$V@example.com" commit -q --allow-empty -m 'clean subject' || return 90
    git push origin "HEAD:refs/heads/author-$R"
}

# The name of a pushed branch (no new object at all).
a_branch_name() {
    git push origin "origin/main:refs/heads/x-$V"
}

# The name of a pushed tag.
a_tag_name() {
    git push origin "origin/main:refs/tags/v-$V"
}

# A file's path.
a_file_path() {
    mkdir -p "dir-$R" && echo hello > "dir-$R/$V.txt" && git add "dir-$R" && git commit -qm 'add notes' || return 90
    git push origin "HEAD:refs/heads/path-$R"
}

# A tag of a tag: the inner tag's message carries it, only the outer is pushed.
a_tag_of_a_tag() {
    git tag -a "inner-$R" -m "inner $V" origin/main && git -c advice.nestedTag=false tag -a "outer-$R" -m outer "inner-$R" || return 90
    git push origin "refs/tags/outer-$R"
}

# Wipe the upstream's main.
delete_upstream_main() {
    git push origin --delete main
}

# Rewrite the upstream's main (non-fast-forward).
rewrite_upstream_main() {
    git checkout -q --detach origin/main && git commit -q --amend --allow-empty -m 'rewritten' || return 90
    git push --force origin HEAD:main
}

# The pushes that smuggle $V (the others change upstream history).
SMUGGLING="octopus_merge tag_of_a_blob tag_of_a_tree a_nul_byte_in_a_file a_file_marked_binary a_nul_in_the_commit_message an_extra_commit_header the_author_and_committer a_branch_name a_tag_name a_file_path a_tag_of_a_tag"
