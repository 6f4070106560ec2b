import { CacheInterceptor, CacheTTL } from '@nestjs/cache-manager';
import { Controller, Get, Param, Query, UseInterceptors } from '@nestjs/common';
import { BusinessesService } from './businesses.service';
import { ttl } from './config';
import { IdPipe, ListQuery, ListQueryPipe } from './pipes';

/** Cached per request URL by Nest's CacheInterceptor, which also answers `X-Cache: HIT` or `MISS`. */
@Controller('api/businesses')
@UseInterceptors(CacheInterceptor)
export class BusinessesController {
  constructor(private readonly businesses: BusinessesService) {}

  @Get('stats')
  @CacheTTL(ttl.stats)
  stats() {
    return this.businesses.stats();
  }

  @Get()
  @CacheTTL(ttl.list)
  list(@Query(ListQueryPipe) query: ListQuery) {
    return this.businesses.list(query);
  }

  @Get(':id')
  @CacheTTL(ttl.detail)
  detail(@Param('id', IdPipe) id: number) {
    return this.businesses.detail(id);
  }
}
