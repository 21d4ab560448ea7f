#!/usr/bin/env bash
# Downloads COCO 2017 (train/val images, annotations) and torchvision's ResNet34 ImageNet weights,
# verifies each file's checksum, and unpacks the archives:
#
#   ssd/data/download_coco.sh [DEST] [ITEM ...]     DEST default data/coco; ITEMs default: all of
#                                                   annotations val2017 train2017 weights
#   DEST/downloads/<file>                  the verified archives (kept; delete them to save 19 GB)
#   DEST/annotations/instances_{train,val}2017.json (and the other annotation files of the zip)
#   DEST/train2017/*.jpg   DEST/val2017/*.jpg
#   DEST/weights/resnet34-333f7ec4.pth
#
#   ssd/data/download_coco.sh DEST coco128          the 128-image excerpt for the CPU rehearsal:
#   DEST/train2017/*.jpg (the first 128 train2017 images by file name), DEST/annotations/
#   instances_train2017.json (their unmodified excerpt), from the public repository
#   developer0hye/COCO128 at commit 47a3de30aaf7ad1c02105bd80598fb03ac0d0789, whose files are
#   byte-identical to the COCO originals; each file is checked against ssd/data/coco128.sha256.
#
# Resumable: an interrupted download continues from DEST/downloads/<file>.part (HTTP Range); a file
# already verified and unpacked is skipped. On a checksum mismatch the file is moved to
# <file>.bad and the script stops with status 1 (nothing is unpacked).
#
# Environment: COCO_MIRROR (default http://images.cocodataset.org), TORCHVISION_MIRROR
# (default https://download.pytorch.org/models) and COCO128_MIRROR (default the COCO128 repository's
# raw files at that commit; any curl URL, file:// included) replace the base URLs; SSD_DOWNLOAD_LIST names a
# file of lines "ITEM BASE PATH ALGORITHM CHECKSUM" (BASE: coco or torchvision) that replaces the
# built-in list below (the tests use it with small files).
set -euo pipefail

DEST=${1:-data/coco}
shift || true
ITEMS=("$@")
[ ${#ITEMS[@]} -eq 0 ] && ITEMS=(annotations val2017 train2017 weights)
COCO_MIRROR=${COCO_MIRROR:-http://images.cocodataset.org}
TORCHVISION_MIRROR=${TORCHVISION_MIRROR:-https://download.pytorch.org/models}
COCO128_COMMIT=47a3de30aaf7ad1c02105bd80598fb03ac0d0789
COCO128_MIRROR=${COCO128_MIRROR:-https://raw.githubusercontent.com/developer0hye/COCO128/$COCO128_COMMIT}
COCO128_SUMS="$(dirname "${BASH_SOURCE[0]}")/coco128.sha256"

# Where the checksums come from. The COCO site publishes no checksums: the MD5s below are the
# ones that several independent public download scripts carry, all agreeing (for example
# PaddleDetection's ppdet/utils/download.py); nobody here has hashed the official files.
# torchvision publishes only the first 8 hex digits of the weights' SHA-256 (in the file name,
# which torch.hub checks); the full SHA-256 below comes from a single third-party repository and
# agrees with that prefix. The script checks the full values.
BUILTIN_LIST="annotations coco annotations/annotations_trainval2017.zip md5 f4bbac642086de4f52a3fdda2de5fa2c
val2017 coco zips/val2017.zip md5 442b8da7639aecaf257c1dceb8ba8c80
train2017 coco zips/train2017.zip md5 cced6f7f71b7629ddf16f17bbcfab6b2
weights torchvision resnet34-333f7ec4.pth sha256 333f7ec4c6338da2cbed37f1fc0445f9624f1355633fa1d7eab79a91084c6cef"
if [ -n "${SSD_DOWNLOAD_LIST:-}" ]; then LIST=$(cat "$SSD_DOWNLOAD_LIST"); else LIST=$BUILTIN_LIST; fi

checksum() {  # checksum ALGORITHM FILE -> hex digest
  case "$1" in
    md5) md5sum "$2" | cut -d' ' -f1 ;;
    sha256) sha256sum "$2" | cut -d' ' -f1 ;;
    *) echo "unknown checksum algorithm $1" >&2; exit 2 ;;
  esac
}

fetch() {  # fetch ITEM BASE PATH ALGORITHM CHECKSUM
  local item=$1 base=$2 path=$3 algo=$4 want=$5
  local url name file
  case "$base" in
    coco) url="$COCO_MIRROR/$path" ;;
    torchvision) url="$TORCHVISION_MIRROR/$path" ;;
    *) echo "unknown base $base for $item" >&2; exit 2 ;;
  esac
  name=$(basename "$path")
  file="$DEST/downloads/$name"
  mkdir -p "$DEST/downloads"
  if [ -f "$DEST/downloads/.$name.done" ]; then
    echo "$item: $name already verified and unpacked"
    return
  fi
  if [ ! -f "$file" ]; then
    echo "$item: downloading $url"
    # -C -: continue from the size of the .part file; --fail: an HTTP error is an error.
    curl --fail --location --retry 3 --silent --show-error -C - -o "$file.part" "$url"
    mv "$file.part" "$file"
  fi
  local got
  got=$(checksum "$algo" "$file")
  if [ "$got" != "$want" ]; then
    mv "$file" "$file.bad"
    echo "$item: checksum mismatch for $name: $algo $got, expected $want; moved to $file.bad; stopping" >&2
    exit 1
  fi
  echo "$item: $algo verified"
  case "$name" in
    *.zip) unzip -q -o "$file" -d "$DEST" ;;
    *) mkdir -p "$DEST/weights"; cp "$file" "$DEST/weights/$name" ;;
  esac
  touch "$DEST/downloads/.$name.done"
}

fetch_coco128() {  # every file of coco128.sha256 into DEST/<path>, placed only once its checksum matched
  local want path file got fetched=0
  while read -r want path; do
    file="$DEST/$path"
    [ -f "$file" ] && continue
    mkdir -p "$(dirname "$file")"
    curl --fail --location --retry 3 --silent --show-error -o "$file.part" "$COCO128_MIRROR/$path"
    got=$(checksum sha256 "$file.part")
    if [ "$got" != "$want" ]; then
      mv "$file.part" "$file.bad"
      echo "coco128: checksum mismatch for $path: sha256 $got, expected $want; moved to $file.bad; stopping" >&2
      exit 1
    fi
    mv "$file.part" "$file"
    fetched=$((fetched + 1))
  done < "$COCO128_SUMS"
  echo "coco128: $fetched of $(wc -l < "$COCO128_SUMS") files downloaded (each placed only after its sha256 matched)"
}

for item in "${ITEMS[@]}"; do
  if [ "$item" == coco128 ]; then fetch_coco128; continue; fi
  line=$(printf '%s\n' "$LIST" | awk -v i="$item" '$1 == i')
  if [ -z "$line" ]; then echo "unknown item $item" >&2; exit 2; fi
  # shellcheck disable=SC2086
  fetch $line
done
echo "done: $DEST"
