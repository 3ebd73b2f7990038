/** The candle engine against the llama.cpp CPU build that llama.cpp itself loads on this CPU. */
import {agreementSuite} from './agreement-suite.js';

await agreementSuite();
