/**
 * ComfyUI has no API key of its own, and its port on 127.0.0.1 answers any local user: anyone on
 * the machine could queue workflows, read outputs or free models on a worker's engine. So ComfyUI
 * is not started as `python main.py …` but through this launcher (`python -c <code> main.py …`),
 * which gives every aiohttp application ComfyUI creates a first middleware that answers 401
 * unless the request carries `Authorization: Bearer <key>`, then runs main.py unchanged as
 * `__main__`. The key comes in the environment (readable by the owner alone) and is removed from it
 * before ComfyUI or its custom nodes run.
 */

/** The environment variable that hands the launcher its key. */
export const comfyKeyVariable = 'COMFYUI_ENGINE_KEY';

export const comfyKeyLauncher = `
import hmac, os, runpy, sys
key = os.environ.pop(${JSON.stringify(comfyKeyVariable)}, '')
if len(key) < 32:
    sys.exit('rbee: the ComfyUI launcher needs a key of 32 characters or more in ${comfyKeyVariable}')
expected = ('Bearer ' + key).encode()
from aiohttp import web

@web.middleware
async def rbee_engine_key(request, handler):
    supplied = request.headers.get('Authorization', '').encode()
    if not hmac.compare_digest(supplied, expected):
        return web.json_response({'error': 'this ComfyUI belongs to an rbee worker: a key is required'}, status=401)
    return await handler(request)

original_init = web.Application.__init__
def keyed_init(self, *args, middlewares=(), **kwargs):
    original_init(self, *args, middlewares=[rbee_engine_key, *middlewares], **kwargs)
web.Application.__init__ = keyed_init

main = sys.argv[1]
sys.argv = sys.argv[1:]
sys.path.insert(0, os.path.dirname(os.path.abspath(main)))
runpy.run_path(main, run_name='__main__')
`;
