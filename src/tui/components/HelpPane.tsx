/** The key map, in place of the detail pane. */
import {Box, Text} from 'ink';
import {keyHelp} from '../view-state.js';

export function HelpPane({width}: {width: number}) {
  return (
    <Box flexDirection="column" borderStyle="round" borderColor="cyan" paddingX={1} width={width}>
      <Text bold>keys</Text>
      {keyHelp.map(([keys, what]) => (
        <Text key={keys} wrap="truncate">
          <Text color="cyan">{keys.padEnd(10)}</Text> {what}
        </Text>
      ))}
    </Box>
  );
}

export const helpPaneHeight = keyHelp.length + 3;
