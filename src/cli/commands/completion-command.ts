/**
 * `rbee completion bash|zsh|fish`: completion scripts generated from the command tree itself,
 * so a new command or flag completes without anyone editing a script.
 */
import {Argument, Command} from 'commander';

type Node = {path: string; words: string[]};

/** Every command path ('' for the root) with what may follow it: subcommands and long options. */
function collect(command: Command, prefix: string[] = []): Node[] {
  const visible = command.commands.filter(sub => !(sub as unknown as {_hidden?: boolean})._hidden);
  const words = [
    ...visible.map(sub => sub.name()),
    ...command.options.filter(option => !option.hidden && option.long !== undefined).map(option => option.long!),
  ];
  return [{path: prefix.join(' '), words}, ...visible.flatMap(sub => collect(sub, [...prefix, sub.name()]))];
}

function bash(nodes: Node[]): string {
  const cases = nodes.map(node => `    "${node.path}") words="${node.words.join(' ')}" ;;`).join('\n');
  return `# rbee completion for bash: eval "$(rbee completion bash)"
_rbee_complete() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" word words i
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    [[ "$word" == -* ]] && continue
    if [[ -z "$path" ]]; then path="$word"; else path="$path $word"; fi
    case "$path" in
${nodes.map(node => `      "${node.path}") ;;`).join('\n')}
      *) path="\${path% *}" ;;
    esac
  done
  case "$path" in
${cases}
    *) words="" ;;
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _rbee_complete rbee
`;
}

function zsh(nodes: Node[]): string {
  return `# rbee completion for zsh: eval "$(rbee completion zsh)"
autoload -U +X bashcompinit && bashcompinit
${bash(nodes).split('\n').slice(1).join('\n')}`;
}

function fish(nodes: Node[]): string {
  const lines = ['# rbee completion for fish: rbee completion fish | source', 'complete -c rbee -f'];
  for (const node of nodes) {
    const parts = node.path === '' ? [] : node.path.split(' ');
    const condition = parts.length === 0 ? '__fish_use_subcommand' : `__fish_seen_subcommand_from ${parts.at(-1)}`;
    for (const word of node.words) {
      lines.push(word.startsWith('--') ? `complete -c rbee -n '${condition}' -l ${word.slice(2)}` : `complete -c rbee -n '${condition}' -a ${word}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export function completionCommand(root: () => Command): Command {
  return new Command('completion')
    .description('print a shell completion script (bash: eval "$(rbee completion bash)")')
    .addArgument(new Argument('<shell>', 'your shell').choices(['bash', 'zsh', 'fish']))
    .action((shell: 'bash' | 'zsh' | 'fish') => {
      const nodes = collect(root());
      process.stdout.write({bash, zsh, fish}[shell](nodes));
    });
}
