/** @jsxRuntime automatic @jsxImportSource react */
// (tsx compiles test files outside tsconfig.json's include: the pragma gives them its react-jsx setting.)
/** Lines: exact width, and colours only when asked. */
import test from 'ava';
import {Box} from 'ink';
import {ColorsContext, Line} from '../../../src/tui/components/Line.js';
import {renderTui} from '../helpers/render.js';

test('a line is cut to its width with an ellipsis, and coloured only with colours on', async t => {
  const ui = renderTui(
    <Box flexDirection="column">
      <Line width={10} segments={[{text: 'worker-'}, {text: 'abcdef', color: 'green'}]} />
      <ColorsContext.Provider value>
        <Line width={10} segments={[{text: 'ok', color: 'green'}]} />
      </ColorsContext.Provider>
    </Box>,
  );
  try {
    const frame = await ui.waitForFrame(/worker-ab…/);
    t.is(frame.split('\n')[0], 'worker-ab…');
    t.is(frame.split('\n')[1], '\u001B[32mok\u001B[39m');
  } finally {
    ui.unmount();
  }
});
