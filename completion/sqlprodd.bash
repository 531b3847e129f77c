# bash completion for sqlprodd(8): commands, options, the database names of
# the configuration in use and the IDs of their backups.
#
# Installed as /usr/share/bash-completion/completions/sqlprodd (loaded on
# demand by bash-completion); also works when sourced on its own, since it
# uses nothing but bash's compgen.
#
# Names and IDs come from sqlprodd itself (`status --json`, `backups --json`)
# with the configuration the command line names (-c FILE, else
# $SQLPRODD_CONFIG, else /etc/sqlprodd.conf): a user who cannot read that
# file gets no names, never an error on the terminal.

_sqlprodd_json_values()
{
    # Values of "KEY": "..." at one indentation of sqlprodd's JSON output.
    local indent=$1 key=$2
    sed -n "s/^${indent}\"${key}\": \"\\([^\"]*\\)\",\\{0,1\\}\$/\\1/p"
}

# The database names; `config` is the caller's -c option (bash's dynamic scope).
_sqlprodd_databases()
{
    "${COMP_WORDS[0]}" "${config[@]}" status --json 2>/dev/null |
        _sqlprodd_json_values "      " name
}

_sqlprodd()
{
    local cur=${COMP_WORDS[COMP_CWORD]} prev=
    [ "$COMP_CWORD" -gt 0 ] && prev=${COMP_WORDS[COMP_CWORD - 1]}
    local commands="run check status reload checkpoint analyze vacuum backup upload prune health drill backups restore verify"
    local -a config=()
    local command= command_index=0 i word
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        case "$word" in
        -c | --config) config=(-c "${COMP_WORDS[i + 1]}"); ((i++)); continue ;;
        --config=*) config=(-c "${word#--config=}"); continue ;;
        -*) continue ;;
        esac
        command=$word command_index=$i
        break
    done

    if [ -z "$command" ]; then
        case "$prev" in
        -c | --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        esac
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "-c --config --help --version" -- "$cur"))
        else
            COMPREPLY=($(compgen -W "$commands help" -- "$cur"))
        fi
        return
    fi

    # Positional words after the command (options and their values skipped).
    local -a positional=()
    local from=local
    for ((i = command_index + 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        case "$word" in
        --to | --backup | --at | --identity) ((i++)) ;;
        --from) from=${COMP_WORDS[i + 1]}; ((i++)) ;;
        --remote) from=remote ;;
        -*) ;;
        *) positional+=("$word") ;;
        esac
    done

    case "$command" in
    status)
        [[ $cur == -* ]] && { COMPREPLY=($(compgen -W "--json" -- "$cur")); return; }
        [ ${#positional[@]} -eq 0 ] && COMPREPLY=($(compgen -W "$(_sqlprodd_databases)" -- "$cur"))
        ;;
    checkpoint | analyze | vacuum | backup | upload | prune | health | drill)
        [ ${#positional[@]} -eq 0 ] && COMPREPLY=($(compgen -W "$(_sqlprodd_databases)" -- "$cur"))
        ;;
    backups)
        [[ $cur == -* ]] && { COMPREPLY=($(compgen -W "--remote --json" -- "$cur")); return; }
        [ ${#positional[@]} -eq 0 ] && COMPREPLY=($(compgen -W "$(_sqlprodd_databases)" -- "$cur"))
        ;;
    restore)
        case "$prev" in
        --to | --identity) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --at) return ;;
        --from) COMPREPLY=($(compgen -W "local remote" -- "$cur")); return ;;
        --backup)
            [ ${#positional[@]} -gt 0 ] || return
            local -a where=()
            [ "$from" = remote ] && where=(--remote)
            COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" "${config[@]}" backups \
                "${positional[0]}" "${where[@]}" --json 2>/dev/null |
                _sqlprodd_json_values "    " id)" -- "$cur"))
            return
            ;;
        esac
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--to --backup --from --at --identity --force" -- "$cur"))
        elif [ ${#positional[@]} -eq 0 ]; then
            COMPREPLY=($(compgen -W "$(_sqlprodd_databases)" -- "$cur"))
        fi
        ;;
    verify)
        [ "$prev" = --identity ] && { COMPREPLY=($(compgen -f -- "$cur")); return; }
        if [[ $cur == -* ]]; then
            COMPREPLY=($(compgen -W "--local --remote --data --json --identity" -- "$cur"))
        elif [ ${#positional[@]} -eq 0 ]; then
            COMPREPLY=($(compgen -W "$(_sqlprodd_databases)" -- "$cur"))
        fi
        ;;
    esac
}
complete -F _sqlprodd sqlprodd
