// Who a typed handle calls. The lookup (GET /v1/handles/{handle}, protocol 5.3) gives one and the
// same 404 for a handle nobody has, a person who hides from us and one who blocks us, and none of
// them could be rung by handle anyway (11.7): the dialler says "No one found" at once, which the
// lookup already tells anyone. A person we find is rung, and one who cannot or will not take the
// call still rings silently until "no answer" (11.8): that the lookup cannot tell.

/** ``{target, name}`` to call (the invite stays by handle, as before; ``name`` is the display
 * name the lookup showed, if any), or ``{notFound: true}``. Other failures (offline, out of
 * lookups) let the invite itself decide, as before. */
export async function whomToCall(api, handle) {
  try {
    const card = await api.lookup(handle);
    return { target: { handle: card.handle }, name: card.display_name || null };
  } catch (error) {
    if (error?.code === "not_found") return { notFound: true };
    return { target: { handle }, name: null };
  }
}
