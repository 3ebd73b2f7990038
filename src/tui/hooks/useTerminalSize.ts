/** The terminal's size, re-read on every resize so the layout follows the window. */
import {useStdout} from 'ink';
import {useEffect, useState} from 'react';

export type TerminalSize = {columns: number; rows: number};

function measure(stdout: NodeJS.WriteStream): TerminalSize {
  return {columns: stdout.columns > 0 ? stdout.columns : 80, rows: stdout.rows > 0 ? stdout.rows : 24};
}

export function useTerminalSize(): TerminalSize {
  const {stdout} = useStdout();
  const [size, setSize] = useState(() => measure(stdout));
  useEffect(() => {
    const resized = () => setSize(measure(stdout));
    stdout.on('resize', resized);
    resized();
    return () => {
      stdout.off('resize', resized);
    };
  }, [stdout]);
  return size;
}
