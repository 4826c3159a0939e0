# bash completion for safe-convert (installed as
# share/bash-completion/completions/safe-convert).
_safe_convert() {
  local cur prev cmd i
  cur=${COMP_WORDS[COMP_CWORD]}
  prev=${COMP_WORDS[COMP_CWORD-1]}
  cmd=convert
  for ((i = 1; i < COMP_CWORD; i++)); do
    case ${COMP_WORDS[i]} in
      convert|inspect|verify|export|batch) cmd=${COMP_WORDS[i]}; break ;;
    esac
  done
  case $prev in
    --report|--worker|--hdf5-worker|--manifest|--results|--sarif)
      COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --digest)
      COMPREPLY=($(compgen -W "xxh3 sha256" -- "$cur")); return ;;
    --require-isolation)
      COMPREPLY=($(compgen -W "non_root userns netns mntns ipcns utsns aslr" -- "$cur")); return ;;
    -o|--out-dir)
      COMPREPLY=($(compgen -d -- "$cur")); return ;;
    -j|--jobs|--shard|--shards)
      return ;;
    --timeout|--cpu-limit|--memory-limit|--max-input-size|--max-output-size)
      return ;;
  esac
  if [[ $cur == -* ]]; then
    local opts="-h --help --version"
    case $cmd in
      convert) opts+=" -f --force --report --json --timeout --memory-limit --cpu-limit
                      --max-input-size --max-output-size --digest --weights-only
                      --keep-optimizer --no-sync --worker --hdf5-worker --require-isolation
                      -q --quiet -v --verbose" ;;
      inspect) opts+=" --json --tensors --architecture --sha256" ;;
      verify) opts+=" -q --quiet" ;;
      export) opts+=" -f --force --no-sync -q --quiet" ;;
      batch) opts+=" --manifest -o --out-dir --results --sarif -j --jobs --shard --shards --dry-run --fork-server
                    --timeout --memory-limit --cpu-limit --max-input-size --max-output-size
                    --digest --weights-only --keep-optimizer --no-sync --worker --hdf5-worker
                    --require-isolation -q --quiet" ;;
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    return
  fi
  if ((COMP_CWORD == 1)); then
    COMPREPLY=($(compgen -W "convert inspect verify export batch help" -- "$cur") $(compgen -f -- "$cur"))
    return
  fi
  COMPREPLY=($(compgen -f -- "$cur"))
}
complete -o filenames -F _safe_convert safe-convert
