#!/usr/bin/env bash
# Builds the checked-in seed images of the ext4 and fat fuzz targets: small, real filesystems made
# by the reference tools from one small tree, so libFuzzer starts from whole images (a few files,
# a directory, a symlink, a multi-block file, long names) instead of bare superblocks, and its
# input size limit (set by the largest seed) covers a whole image.
#
# Run from anywhere: ./make.sh rewrites seeds/ext4/ (ext4 and ext2) and seeds/fat/ (FAT12 and
# FAT16) next to it. Needs mke2fs and debugfs (e2fsprogs), mkfs.fat (dosfstools) and mcopy/mmd
# (mtools). Times, UUIDs and volume ids are fixed, so a re-run gives the same bytes. NTFS has no
# seed: mkntfs wants more than 1 MiB. XFS neither: its minimum size is about 300 MiB.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export LC_ALL=C.UTF-8 TZ=UTC
# 2024-01-02 03:04:05 UTC: every timestamp the tools write.
epoch=1704164645
stamp=202401020304.05
export E2FSPROGS_FAKE_TIME=$epoch SOURCE_DATE_EPOCH=$epoch MTOOLS_SKIP_CHECK=1

# The source tree: small files, an empty one, a file spanning many blocks (several extents on
# ext4: it is written in pieces with a hole), nested directories, a symlink and a long name.
tree=$work/tree
mkdir -p "$tree/dir/sub" "$tree/docs"
printf 'hello, seed\n' > "$tree/hello.txt"
: > "$tree/empty"
printf 'nested file\n' > "$tree/dir/sub/deep.txt"
printf 'a longer name than 8.3 allows\n' > "$tree/docs/A long file name.txt"
for i in 1 2 3 4 5 6; do printf 'entry %s\n' "$i" > "$tree/dir/file-$i"; done
# 12 KiB of data, a 4 KiB hole, 8 KiB of data: more than the 12 direct blocks of 1 KiB.
head -c 12288 /dev/zero | tr '\0' 'x' > "$tree/big.bin"
head -c 8192 /dev/zero | tr '\0' 'y' | dd of="$tree/big.bin" bs=1024 seek=16 conv=notrunc status=none
ln -s dir/sub/deep.txt "$tree/link"
ln -s ../hello.txt "$tree/dir/up"
chmod 0644 "$tree"/*.txt "$tree/empty" "$tree/big.bin" "$tree"/dir/file-* "$tree/dir/sub/deep.txt"
chmod 0755 "$tree" "$tree/dir" "$tree/dir/sub" "$tree/docs"
find "$tree" -exec touch -h -t "$stamp" {} +

# ext2/ext4 with 1 KiB blocks and 32 inodes, no journal (it would take most of the image).
ext() {
    local out=$1 kib=$2 uuid=$3
    shift 3
    rm -f "$out"
    truncate -s "${kib}K" "$out"
    mke2fs -q -F -b 1024 -N 32 -m 0 -U "$uuid" -E "hash_seed=$uuid" -L seed -d "$tree" "$@" "$out"
    # mke2fs copies the sources' ctimes, which touch cannot set, and atimes, which reading them
    # (mke2fs, mcopy) moves: pin both.
    (cd "$tree" && find . -mindepth 1 | sed 's|^\.||') | sort |
        sed "s|.*|sif \"&\" ctime @$epoch\nsif \"&\" atime @$epoch|" > "$work/times"
    debugfs -w -f "$work/times" "$out" > /dev/null 2>&1
}
mkdir -p "$here/ext4"
ext "$here/ext4/ext4.img" 128 5eed0001-0000-4000-8000-000000000001 -t ext4 -O ^has_journal
ext "$here/ext4/ext2.img" 96 5eed0001-0000-4000-8000-000000000002 -t ext2

# FAT12 and FAT16: mkfs.fat with a fixed volume id, then the tree written with mtools (-m keeps
# the mtimes; the directories mmd makes get SOURCE_DATE_EPOCH's time).
# FAT16 needs at least 4085 clusters (about 2 MiB at one sector a cluster): that image is cut
# after the clusters mcopy wrote, its BPB still giving the full size, which the readers accept.
fat() {
    local out=$1 kib=$2 bits=$3 id=$4 keep=$5
    rm -f "$out"
    mkfs.fat -C --invariant -F "$bits" -s 1 -n SEED -i "$id" "$out" "$kib" > /dev/null
    mmd -i "$out" ::/dir ::/dir/sub ::/docs
    mcopy -m -i "$out" "$tree/hello.txt" "$tree/empty" "$tree/big.bin" ::/
    mcopy -m -i "$out" "$tree"/dir/file-* ::/dir/
    mcopy -m -i "$out" "$tree/dir/sub/deep.txt" ::/dir/sub/
    mcopy -m -i "$out" "$tree/docs/A long file name.txt" ::/docs/
    truncate -s "${keep}K" "$out"
}
mkdir -p "$here/fat"
fat "$here/fat/fat12.img" 128 12 5eed0012 128
fat "$here/fat/fat16.img" 2100 16 5eed0016 96
