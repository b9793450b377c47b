// The component's entry: the one module that binds the contract
// (eventsift:plugin@0.2.0) for this plugin.

import { write } from 'eventsift:plugin/log@0.2.0';
import { exportPlugin } from '@eventsift/sdk';
import definition from './plugin';

export const plugin = exportPlugin(definition, write);
