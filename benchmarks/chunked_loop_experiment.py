"""The experiment behind the removed chunked "fused" update (see RESULTS.md).

    python benchmarks/chunked_loop_experiment.py 32768 262144 2097152

Adam on one 2**24-element float32 leaf, written by hand two ways, timed interleaved
against a donated triad: ``plain`` (one jitted function: XLA:CPU makes three passes,
m, v, then params) and ``chunkN`` (a ``fori_loop`` over chunks of N elements that
updates m, v and params of one chunk in place before the next, so that each byte
crosses the memory bus once). On XLA:CPU the loop is slower, not faster.
"""
import jax, jax.numpy as jnp, time, numpy as np, sys
from functools import partial
n=1<<24
b1,b2,eps,lr=0.9,0.999,1e-8,1e-3
def plain(p,g,m,v,count):
    count=count+1; c1=1-b1**count.astype(jnp.float32); c2=1-b2**count.astype(jnp.float32)
    m=b1*m+(1-b1)*g; v=b2*v+(1-b2)*g*g
    return p-lr*(m/c1)/(jnp.sqrt(v/c2)+eps),m,v,count
def chunked(p,g,m,v,count, chunk):
    count=count+1; c1=1-b1**count.astype(jnp.float32); c2=1-b2**count.astype(jnp.float32)
    def body(i,carry):
        p,m,v=carry; s=i*chunk
        ds=lambda a: jax.lax.dynamic_slice_in_dim(a,s,chunk)
        gc=ds(g)
        m=jax.lax.dynamic_update_slice_in_dim(m,b1*ds(m)+(1-b1)*gc,s,0)
        v=jax.lax.dynamic_update_slice_in_dim(v,b2*ds(v)+(1-b2)*gc*gc,s,0)
        m,v=jax.lax.optimization_barrier((m,v))
        pc=ds(p)-lr*(ds(m)/c1)/(jnp.sqrt(ds(v)/c2)+eps)
        return (jax.lax.dynamic_update_slice_in_dim(p,pc,s,0),m,v)
    p,m,v=jax.lax.fori_loop(0,n//chunk,body,(p,m,v))
    return p,m,v,count
fns={'plain':jax.jit(plain,donate_argnums=(0,2,3))}
for ch in [int(c) for c in sys.argv[1:]]:
    fns[f'chunk{ch}']=jax.jit(partial(chunked,chunk=ch),donate_argnums=(0,2,3))
tri=jax.jit(lambda a,b: a+0.5*b, donate_argnums=(0,))
g=jnp.full(n,0.1)
st={k:(jnp.ones(n),jnp.zeros(n),jnp.zeros(n),jnp.zeros([],jnp.int32)) for k in fns}
def run(k):
    p,m,v,c=st[k]; t=time.perf_counter(); out=fns[k](p,g,m,v,c); jax.block_until_ready(out); dt=time.perf_counter()-t; st[k]=out; return dt
for k in fns: run(k)
a=jnp.ones(n); a=tri(a,g).block_until_ready()
T={k:[] for k in list(fns)+['triad']}
for r in range(20):
    for k in fns: T[k].append(run(k))
    t=time.perf_counter(); a=tri(a,g); a.block_until_ready(); T['triad'].append(time.perf_counter()-t)
bw=12*n/np.median(T['triad']); floor=28*n/bw
print(f"triad {bw/1e9:.1f} GB/s (median), floor {floor*1e3:.2f} ms")
for k,v in T.items(): print(f"{k:12s} median {np.median(v)*1e3:7.2f} ms  min {np.min(v)*1e3:7.2f}  x floor {np.median(v)/floor:.2f}")
